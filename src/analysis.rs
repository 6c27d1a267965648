//! Market data and analysis agents: building the feed and the model clients from settings,
//! starting the supervised actors, and the offline `triplegain analyze` computation.

use crate::llm::ProviderSettings as LlmProvider;
use crate::market::driver::{drive_feed, FeedClock};
use crate::market::{
    load_candles, parse_replay_arg, symbol_from_file_name, KrakenPublicFeed, ReplayFeed, SimulatedFeed,
};
use crate::settings::{AgentModelSettings, MarketSource, Settings};
use actix::{Addr, Recipient};
use anyhow::Context as _;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::agents::actors::{
    AgentContext, AnalysisCaches, DecisionAgentConfig, ModelSlot, RegimeAgentConfig, RegimeDetectionAgent,
    SentimentAgent, SentimentProvider, TechnicalAnalysisAgent, TradingDecisionAgent, AGENT_MAILBOX,
};
use triplegain_actors::agents::api::{AgentName, RunAnalysis};
use triplegain_actors::agents::regime_detection::{detect, HysteresisConfig, RegimeInput, RegimeTracker, TaSummary};
use triplegain_actors::agents::sentiment::{AggregationConfig, SentimentSource};
use triplegain_actors::agents::technical_analysis::{analyse, TaInput};
use triplegain_actors::agents::trading_decision::ConsensusConfig;
use triplegain_actors::bus::Bus;
use triplegain_actors::clock::{ManualClock, SharedClock};
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::indicators::IndicatorEngine;
use triplegain_actors::market::{CandleAggregator, MarketData, MarketDataConfig};
use triplegain_actors::ports::{AuditStore, MarketFeed, ModelClient};
use triplegain_actors::supervision::{start_supervised, Registry};

/// Mailbox of the market data actor: the feed loop waits for each batch, agents ask for views.
pub const MARKET_MAILBOX: usize = 1024;

/// A usable model client per provider name: keyed providers with a key, keyless ones (Ollama)
/// only when `agents.local_models` is on. One circuit breaker per provider, shared by agents.
pub fn model_clients(settings: &Settings) -> BTreeMap<String, (Arc<dyn ModelClient>, u64)> {
    let http = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for mut p in LlmProvider::defaults() {
        let configured = settings.llm.providers.get(&p.name);
        if let Some(c) = configured {
            if !c.base_url.is_empty() {
                p.base_url.clone_from(&c.base_url);
            }
        }
        if let Some(ms) = settings.agents.provider_timeouts_ms.get(&p.name) {
            p.timeout_ms = *ms;
        }
        let key = configured
            .and_then(|c| c.api_key.as_ref())
            .map(|k| SecretString::from(k.expose().to_owned()));
        let keyless = p.api_key_env.is_none();
        if keyless && !settings.agents.local_models {
            continue;
        }
        if !keyless && key.is_none() {
            continue;
        }
        if let Some(client) = p.guarded_client(key, &http) {
            tracing::info!(provider = %p.name, "model provider configured");
            out.insert(p.name.clone(), (client, p.timeout_ms));
        }
    }
    out
}

fn slot(
    m: &AgentModelSettings,
    clients: &BTreeMap<String, (Arc<dyn ModelClient>, u64)>,
    timeout_ms: Option<u64>,
) -> Option<ModelSlot> {
    let (client, provider_timeout) = clients.get(&m.provider)?;
    Some(ModelSlot {
        name: m.name.clone(),
        provider: m.provider.clone(),
        model: m.model.clone(),
        client: client.clone(),
        timeout_ms: timeout_ms.unwrap_or(*provider_timeout),
    })
}

/// Where the agents' model answers come from.
#[derive(Clone, Default)]
pub enum ModelSource {
    /// The configured providers that have a key; every answer is appended to
    /// `llm.record_path` (empty = not recorded). Live and paper runs.
    #[default]
    Providers,
    /// No model at all: rule-based decisions and neutral sentiment (a backtest's default).
    RuleBased,
    /// Only answers from a recorded run (`backtest --llm-replay`): the models the record holds
    /// answers of are asked, and a prompt it does not hold is a miss.
    Replay(crate::llm::chain::ReplayBook),
}

/// Builds the model slots of one agent from its configured models.
struct Slots {
    source: ModelSource,
    clients: BTreeMap<String, (Arc<dyn ModelClient>, u64)>,
    recorder: Option<Arc<dyn crate::llm::chain::ModelRecorder>>,
}

impl Slots {
    fn new(settings: &Settings, source: ModelSource) -> anyhow::Result<Self> {
        let clients = match source {
            ModelSource::Providers => model_clients(settings),
            ModelSource::RuleBased | ModelSource::Replay(_) => BTreeMap::new(),
        };
        let path = settings.llm.record_path.trim();
        let recorder: Option<Arc<dyn crate::llm::chain::ModelRecorder>> = if clients.is_empty() || path.is_empty() {
            None
        } else {
            let path = Path::new(path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("llm.record_path: creating {}", dir.display()))?;
            }
            let rec = crate::llm::chain::JsonlRecorder::open(path)
                .with_context(|| format!("llm.record_path: opening {}", path.display()))?;
            tracing::info!(path = %path.display(), "recording every model answer");
            Some(Arc::new(rec))
        };
        Ok(Self {
            source,
            clients,
            recorder,
        })
    }

    fn slot(&self, agent: AgentName, m: &AgentModelSettings, timeout_ms: Option<u64>) -> Option<ModelSlot> {
        match &self.source {
            ModelSource::RuleBased => None,
            ModelSource::Replay(book) => book.has_model(agent.as_str(), &m.model).then(|| ModelSlot {
                name: m.name.clone(),
                provider: m.provider.clone(),
                model: m.model.clone(),
                client: Arc::new(book.client(agent.as_str())),
                timeout_ms: timeout_ms.unwrap_or(30_000),
            }),
            ModelSource::Providers => {
                let mut s = slot(m, &self.clients, timeout_ms)?;
                if let Some(rec) = &self.recorder {
                    s.client = Arc::new(crate::llm::chain::RecordingClient::new(
                        s.client,
                        agent.as_str(),
                        rec.clone(),
                    ));
                }
                Some(s)
            }
        }
    }
}

/// The configured feed, the way it moves the business clock, and the timeframe it delivers.
///
/// # Errors
/// A replay file that cannot be opened or read, or an invalid Kraken base URL.
/// `market.source: external`: the process has no feed of its own; candles are delivered to the
/// market data actor from outside. Polling it only ever says "nothing new".
struct ExternalFeed {
    symbols: Vec<Symbol>,
}

impl MarketFeed for ExternalFeed {
    fn symbols(&self) -> Vec<Symbol> {
        self.symbols.clone()
    }

    fn next(
        &mut self,
    ) -> futures::future::BoxFuture<'_, Result<triplegain_actors::ports::FeedItem, triplegain_actors::ports::FeedError>>
    {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(triplegain_actors::ports::FeedItem::Idle)
        })
    }
}

pub fn build_feed(
    settings: &Settings,
    feed_clock: Option<ManualClock>,
) -> anyhow::Result<(Box<dyn MarketFeed>, FeedClock, Timeframe)> {
    let symbols = configured_symbols(settings);
    match settings.market.source {
        MarketSource::Simulated => {
            // A resumed business clock may be ahead of the wall clock: the market continues there.
            let now = feed_clock.as_ref().map_or_else(chrono::Utc::now, |c| {
                triplegain_actors::clock::Clock::now(c).max(chrono::Utc::now())
            });
            let start = now - chrono::Duration::hours(i64::from(settings.indicators.warm_up_hours));
            let feed = SimulatedFeed::seeded(
                settings.market.simulated.seed,
                start,
                f64::from(settings.market.simulated.speed),
            )
            .unpaced_until(now);
            let clock = feed_clock.map_or(FeedClock::Wall, FeedClock::Follow);
            Ok((Box::new(feed), clock, Timeframe::M1))
        }
        MarketSource::External => {
            let clock = feed_clock.map_or(FeedClock::Wall, FeedClock::Follow);
            Ok((Box::new(ExternalFeed { symbols }), clock, Timeframe::M1))
        }
        MarketSource::Kraken => {
            let feed = KrakenPublicFeed::new(&settings.kraken.base_url, symbols)
                .map_err(|e| anyhow::anyhow!("market.source kraken: {e}"))?
                .with_poll_interval(Duration::from_secs(settings.market.poll_interval_secs.max(1)));
            Ok((Box::new(feed), FeedClock::Wall, Timeframe::M1))
        }
        MarketSource::KrakenWs => {
            let rest = KrakenPublicFeed::new(&settings.kraken.base_url, symbols.clone())
                .map_err(|e| anyhow::anyhow!("market.source kraken_ws: {e}"))?
                .with_poll_interval(Duration::from_secs(settings.market.poll_interval_secs.max(1)));
            let feed = crate::market::KrakenWsFeed::new(&settings.kraken.ws_public_url, symbols, rest);
            Ok((Box::new(feed), FeedClock::Wall, Timeframe::M1))
        }
        MarketSource::Replay => {
            let files = settings
                .market
                .replay_files
                .iter()
                .map(|a| parse_replay_arg(a).map_err(|e| anyhow::anyhow!("market.replay_files: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let feed = ReplayFeed::open(files).map_err(|e| anyhow::anyhow!("market.replay_files: {e}"))?;
            let tfs = feed.timeframes();
            let base = tfs.iter().map(|(_, tf)| *tf).min().unwrap_or(Timeframe::M1);
            if tfs.iter().any(|(_, tf)| *tf != base) {
                anyhow::bail!("market.replay_files: every replay file must have the same timeframe ({tfs:?})");
            }
            let clock = feed_clock.map_or(FeedClock::Wall, FeedClock::Replay);
            Ok((Box::new(feed), clock, base))
        }
    }
}

fn configured_symbols(settings: &Settings) -> Vec<Symbol> {
    settings
        .market
        .symbols
        .iter()
        .filter_map(|s| Symbol::parse(s).ok())
        .collect()
}

/// The running market data actor and agents.
pub struct Analysis {
    pub market: Addr<MarketData>,
    pub agents: BTreeMap<AgentName, Recipient<RunAnalysis>>,
    pub caches: AnalysisCaches,
    /// The configured market symbols.
    pub symbols: Vec<Symbol>,
}

/// Starts the market data actor, the feed loop and the enabled agents.
///
/// # Errors
/// When the feed cannot be built.
pub fn start(
    settings: &Settings,
    registry: &Registry,
    bus: &Bus,
    clock: SharedClock,
    feed_clock: Option<ManualClock>,
    audit: Arc<dyn AuditStore>,
    models: ModelSource,
) -> anyhow::Result<Analysis> {
    let (feed, feed_clock, base) = build_feed(settings, feed_clock).context("building the market feed")?;
    let market = {
        let cfg = MarketDataConfig {
            base,
            primary: settings.indicators.primary_timeframe,
            bus: bus.clone(),
            clock: clock.clone(),
        };
        start_supervised(registry, "market_data", true, MARKET_MAILBOX, move |sup| {
            MarketData::new(sup, cfg)
        })
    };
    // A replay delivers the symbols of its files; the other feeds the configured ones.
    let symbols = match settings.market.source {
        MarketSource::Replay => feed.symbols(),
        MarketSource::Simulated | MarketSource::Kraken | MarketSource::KrakenWs | MarketSource::External => {
            configured_symbols(settings)
        }
    };
    let idle = Duration::from_secs(settings.market.poll_interval_secs.clamp(1, 60));
    actix_web::rt::spawn(drive_feed(
        feed,
        market.clone().recipient(),
        feed_clock,
        symbols.clone(),
        idle,
    ));

    let caches = AnalysisCaches::new(clock.clone());
    let ctx = AgentContext {
        market: market.clone().recipient(),
        bus: bus.clone(),
        clock,
        audit,
        caches: caches.clone(),
    };
    let slots = Slots::new(settings, models)?;
    let a = &settings.agents;
    let mut agents: BTreeMap<AgentName, Recipient<RunAnalysis>> = BTreeMap::new();
    if a.technical_analysis.enabled {
        let c = ctx.clone();
        let addr = start_supervised(
            registry,
            AgentName::TechnicalAnalysis.as_str(),
            false,
            AGENT_MAILBOX,
            move |sup| TechnicalAnalysisAgent::new(sup, c),
        );
        agents.insert(AgentName::TechnicalAnalysis, addr.recipient());
    }
    if a.regime_detection.enabled {
        let c = ctx.clone();
        let cfg = RegimeAgentConfig {
            hysteresis: HysteresisConfig {
                min_change_confidence: a.regime_detection.min_regime_change_confidence,
                change_periods: a.regime_detection.regime_change_periods.max(1),
            },
            interval_secs: a.regime_detection.interval_secs,
        };
        let addr = start_supervised(
            registry,
            AgentName::RegimeDetection.as_str(),
            false,
            AGENT_MAILBOX,
            move |sup| RegimeDetectionAgent::new(sup, c, cfg),
        );
        agents.insert(AgentName::RegimeDetection, addr.recipient());
    }
    if a.sentiment_analysis.enabled {
        let s = &a.sentiment_analysis;
        let providers: Vec<SentimentProvider> =
            [(SentimentSource::Social, &s.social), (SentimentSource::News, &s.news)]
                .into_iter()
                .filter_map(|(source, m)| {
                    let slot = slots.slot(AgentName::SentimentAnalysis, m.as_ref()?, Some(s.timeout_ms))?;
                    Some(SentimentProvider { source, slot })
                })
                .collect();
        if providers.is_empty() {
            tracing::warn!("sentiment: no provider key configured; neutral sentiment with confidence 0");
        }
        let aggregation = AggregationConfig {
            social_weight: s.social_weight,
            news_weight: s.news_weight,
        };
        let c = ctx.clone();
        let addr = start_supervised(
            registry,
            AgentName::SentimentAnalysis.as_str(),
            false,
            AGENT_MAILBOX,
            move |sup| SentimentAgent::new(sup, c, providers, aggregation),
        );
        agents.insert(AgentName::SentimentAnalysis, addr.recipient());
    }
    if a.trading_decision.enabled {
        let d = &a.trading_decision;
        let models: Vec<ModelSlot> = d
            .models
            .iter()
            .filter_map(|m| slots.slot(AgentName::TradingDecision, m, None))
            .collect();
        let panel = d.strategies.enabled();
        tracing::info!(
            models = models.len(),
            strategies = ?panel.iter().map(|k| k.model_name()).collect::<Vec<_>>(),
            "trading decision: panel consensus of the strategies and models"
        );
        let cfg = DecisionAgentConfig {
            consensus: ConsensusConfig {
                min_quorum: d.min_quorum,
                unanimous_boost: d.unanimous_boost,
                strong_majority_boost: d.strong_majority_boost,
                majority_boost: d.majority_boost,
            },
            strategies: d.strategies.clone(),
            deadline_ms: d.timeout_secs.saturating_mul(1000),
            max_tokens: d.max_tokens,
            temperature: d.temperature,
        };
        let c = ctx;
        let addr = start_supervised(
            registry,
            AgentName::TradingDecision.as_str(),
            false,
            AGENT_MAILBOX,
            move |sup| TradingDecisionAgent::new(sup, c, models, cfg),
        );
        agents.insert(AgentName::TradingDecision, addr.recipient());
    }
    Ok(Analysis {
        market,
        agents,
        caches,
        symbols,
    })
}

// ---------------------------------------------------------------- triplegain analyze

/// `triplegain analyze`: indicators, TA and regime for the last candle of a CSV file.
///
/// # Errors
/// A message naming the file (and line, for malformed rows), or an unknown symbol.
pub fn analyze_file(
    path: &Path,
    symbol: Option<&str>,
    timeframe: Option<Timeframe>,
) -> Result<serde_json::Value, String> {
    let symbol = match symbol {
        Some(s) => Symbol::parse(s).map_err(|e| format!("--symbol: {e}"))?,
        None => symbol_from_file_name(path).ok_or_else(|| {
            format!(
                "cannot tell the symbol of {}; pass --symbol (e.g. --symbol BTC/USDT)",
                path.display()
            )
        })?,
    };
    let candles = load_candles(path, &symbol).map_err(|e| e.to_string())?;
    let Some(first) = candles.first() else {
        return Err(format!("{}: no candles", path.display()));
    };
    let file_tf = first.timeframe;
    let candles: Vec<Candle> = match timeframe {
        None => candles,
        Some(tf) if tf == file_tf => candles,
        Some(tf) if tf.seconds() < file_tf.seconds() || tf.seconds() % file_tf.seconds() != 0 => {
            return Err(format!(
                "--timeframe {tf}: cannot be built from the file's {file_tf} candles"
            ))
        }
        Some(tf) => {
            let mut agg = CandleAggregator::from_base(file_tf);
            let mut out = Vec::new();
            for c in &candles {
                let closed = agg.push(c).map_err(|e| format!("{}: {e}", path.display()))?;
                out.extend(closed.into_iter().filter(|x| x.timeframe == tf));
            }
            out
        }
    };
    let tf = timeframe.unwrap_or(file_tf);
    let mut engine = IndicatorEngine::new();
    let mut previous = None;
    let mut current = None;
    for c in &candles {
        let snap = engine.try_update(c).map_err(|e| format!("{}: {e}", path.display()))?;
        previous = current.replace(snap);
    }
    let (Some(last), Some(indicators)) = (candles.last(), current) else {
        return Err(format!("{}: no complete {tf} candle", path.display()));
    };
    let recent: Vec<Candle> = candles.iter().rev().take(48).rev().cloned().collect();
    let ta = analyse(&TaInput {
        symbol: &symbol,
        timeframe: tf,
        timestamp: last.open_time,
        current_price: last.close,
        indicators: &indicators,
        previous: previous.as_ref(),
        recent_candles: &recent,
        timeframe_trends: &[],
    });
    let detection = detect(&RegimeInput {
        current_price: last.close,
        indicators: &indicators,
        ta: Some(TaSummary::from(&ta)),
    });
    let regime = RegimeTracker::default().observe(&symbol, detection, last.open_time);
    Ok(serde_json::json!({
        "symbol": symbol.as_str(),
        "timeframe": tf.as_str(),
        "timestamp": last.open_time,
        "current_price": last.close,
        "indicators": indicators,
        "ta": ta,
        "regime": regime,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::settings::Secret;

    #[test]
    fn models_only_for_providers_with_keys_and_local_models_on_request() {
        let mut s = Settings::default();
        assert!(
            model_clients(&s).is_empty(),
            "no keys, no local models: rule-based only"
        );

        s.llm.providers.get_mut("openai").unwrap().api_key = Some(Secret::new("sk-test-0123456789"));
        let clients = model_clients(&s);
        assert_eq!(clients.keys().collect::<Vec<_>>(), ["openai"]);
        assert_eq!(clients["openai"].1, 60_000, "agents.provider_timeouts_ms");

        s.agents.local_models = true;
        s.agents.provider_timeouts_ms.insert("ollama".into(), 1234);
        let clients = model_clients(&s);
        assert_eq!(clients.keys().collect::<Vec<_>>(), ["ollama", "openai"]);
        assert_eq!(clients["ollama"].1, 1234);
    }

    #[test]
    fn decision_models_map_to_configured_providers() {
        let mut s = Settings::default();
        s.llm.providers.get_mut("anthropic").unwrap().api_key = Some(Secret::new("sk-ant-0123456789"));
        let clients = model_clients(&s);
        let slots: Vec<ModelSlot> = s
            .agents
            .trading_decision
            .models
            .iter()
            .filter_map(|m| slot(m, &clients, None))
            .collect();
        let names: Vec<&str> = slots.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["sonnet", "opus"], "both Anthropic models, nothing else");
        assert_eq!(slots[1].model, "claude-3-opus-20240229");
    }

    #[actix_rt::test]
    async fn provider_answers_are_recorded_and_replayed_per_agent() {
        use crate::llm::chain::{FnModelClient, ReplayBook};
        use triplegain_actors::ports::ModelRequest;
        let dir = std::env::temp_dir().join(format!("tg-record-unit-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested").join("answers.jsonl");
        let mut s = Settings::default();
        s.llm.record_path = path.display().to_string();
        s.llm.providers.get_mut("openai").unwrap().api_key = Some(Secret::new("sk-test-0123456789"));
        // Opening the recorder creates the directory.
        let mut slots = Slots::new(&s, ModelSource::Providers).unwrap();
        assert!(slots.recorder.is_some() && path.exists());
        let fake: Arc<dyn ModelClient> = Arc::new(FnModelClient::new("openai", |r| {
            Ok(format!("answer to {}", r.user_prompt))
        }));
        slots.clients.insert("openai".into(), (fake, 1000));
        let gpt4 = s
            .agents
            .trading_decision
            .models
            .iter()
            .find(|m| m.provider == "openai")
            .unwrap();
        let slot = slots.slot(AgentName::TradingDecision, gpt4, None).unwrap();
        let req = ModelRequest {
            model: slot.model.clone(),
            system_prompt: "sys".into(),
            user_prompt: "BTC?".into(),
            max_tokens: 10,
            temperature: 0.0,
            timeout_ms: 1000,
        };
        let live = slot.client.complete(req.clone()).await.unwrap();
        assert_eq!(live.text, "answer to BTC?");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"agent\":\"trading_decision\""), "{text}");

        // Replayed: the same answer for the same agent, model and prompt; a miss for another prompt.
        let book = ReplayBook::load_jsonl(&path).unwrap();
        let replay = Slots::new(&s, ModelSource::Replay(book.clone())).unwrap();
        assert!(replay.recorder.is_none(), "a replay records nothing");
        let slot = replay.slot(AgentName::TradingDecision, gpt4, None).unwrap();
        assert_eq!(slot.client.complete(req.clone()).await.unwrap(), live);
        let other = ModelRequest {
            user_prompt: "XRP?".into(),
            ..req
        };
        assert!(slot.client.complete(other).await.is_err());
        assert_eq!(book.misses().len(), 1);
        assert_eq!(book.misses()[0].agent, "trading_decision");
        // Models the record holds nothing of are not asked; rule-based runs have no model at all.
        let opus = s
            .agents
            .trading_decision
            .models
            .iter()
            .find(|m| m.name == "opus")
            .unwrap();
        assert!(replay.slot(AgentName::TradingDecision, opus, None).is_none());
        let rules = Slots::new(&s, ModelSource::RuleBased).unwrap();
        assert!(rules.slot(AgentName::TradingDecision, gpt4, None).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn analyze_rejects_a_timeframe_below_the_file() {
        let dir = std::env::temp_dir().join(format!("tg-analyze-unit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("BTC_USDT.csv");
        std::fs::write(
            &file,
            "timestamp,open,high,low,close,volume\n1735689600,1,2,0.5,1.5,10\n1735693200,1.5,2,1,1.8,10\n",
        )
        .unwrap();
        let err = analyze_file(&file, None, Some(Timeframe::M5)).unwrap_err();
        assert!(err.contains("--timeframe 5m"), "{err}");
        let doc = analyze_file(&file, None, None).unwrap();
        assert_eq!(
            doc["indicators"]["rsi_14"],
            serde_json::Value::Null,
            "null during warm-up"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
