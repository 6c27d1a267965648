use crate::helpers::{spawn_app, VIEWER};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::PrometheusValue;
use std::collections::BTreeSet;
use std::time::Duration;
use triplegain_actors::messages::{EventMeta, SystemEvent};

async fn next_chunk(resp: &mut reqwest::Response) -> String {
    let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("a chunk within 5 s")
        .expect("stream readable")
        .expect("stream still open");
    String::from_utf8(chunk.to_vec()).unwrap()
}

#[actix_web::test]
async fn event_stream_delivers_an_event_published_after_the_client_connected() {
    // Arrange
    let app = spawn_app().await;
    assert_eq!(app.get("/api/v1/events", None).await.status(), 401);
    let mut resp = app.get("/api/v1/events", Some(VIEWER)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(next_chunk(&mut resp).await.starts_with(": connected"));

    // Act: publish after the client is connected (and subscribed).
    let mut text = String::new();
    for attempt in 0..20 {
        app.state.bus.system_events.publish(SystemEvent {
            meta: EventMeta::new("test", chrono::Utc::now()),
            event: format!("operator_note_{attempt}"),
            details: serde_json::json!({"attempt": attempt}),
        });
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(250), resp.chunk()).await {
            text = String::from_utf8(chunk.to_vec()).unwrap();
            break;
        }
    }

    // Assert: `id:` (the event's id), `event:`, then the JSON `data:` line.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id: "), "{text}");
    assert_eq!(lines[1], "event: system_events", "{text}");
    let json: serde_json::Value = serde_json::from_str(lines[2].trim_start_matches("data: ")).unwrap();
    assert!(json["event"].as_str().unwrap().starts_with("operator_note_"), "{json}");
    assert_eq!(
        lines[0].trim_start_matches("id: "),
        json["meta"]["id"].as_str().unwrap(),
        "{text}"
    );
    drop(resp);
    app.shutdown().await;
}

#[actix_web::test]
async fn event_stream_filter_delivers_only_the_requested_types() {
    use triplegain_actors::domain::Severity;
    use triplegain_actors::messages::{AlertType, RiskAlert};
    let app = spawn_app().await;
    let r = app.get("/api/v1/events?types=risk_alerts,bogus", Some(VIEWER)).await;
    assert_eq!(r.status(), 422);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["field"], "types", "{b}");

    let mut resp = app.get("/api/v1/events?types=risk_alerts", Some(VIEWER)).await;
    assert_eq!(resp.status(), 200);
    assert!(next_chunk(&mut resp).await.starts_with(": connected"));

    // Act: a filtered-out system event, then a risk alert, both after the client connected.
    let mut text = String::new();
    for attempt in 0..20 {
        app.state.bus.system_events.publish(SystemEvent {
            meta: EventMeta::new("test", chrono::Utc::now()),
            event: format!("filtered_out_{attempt}"),
            details: serde_json::json!({}),
        });
        app.state.bus.risk_alerts.publish(RiskAlert {
            meta: EventMeta::new("test", chrono::Utc::now()),
            alert_type: AlertType::TradeRejected,
            severity: Severity::Low,
            message: format!("alert_{attempt}"),
            action_required: None,
            breach: None,
            symbol: None,
        });
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(250), resp.chunk()).await {
            text = String::from_utf8(chunk.to_vec()).unwrap();
            break;
        }
    }

    // Assert: the first frame is the alert; no system event ever arrives.
    assert_eq!(text.lines().nth(1), Some("event: risk_alerts"), "{text}");
    let mut rest = text.clone();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !rest.contains("system_events") && !rest.contains("filtered_out_"),
        "{rest}"
    );
    assert!(rest.contains("alert_"), "{rest}");
    drop(resp);
    app.shutdown().await;
}

/// One sample of a scrape.
#[derive(Debug)]
struct Series {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: PrometheusValue,
}

/// Parses a scrape with a (strict) Prometheus text parser.
fn scrape(text: &str) -> Vec<Series> {
    let exposition = parse_prometheus(text).unwrap_or_else(|e| panic!("not Prometheus text: {e:?}\n{text}"));
    let mut out = Vec::new();
    for (name, family) in exposition.families {
        for sample in family.iter_samples() {
            let labels = sample
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            out.push(Series {
                name: name.clone(),
                labels,
                value: sample.value.clone(),
            });
        }
    }
    out
}

fn scalar(v: &PrometheusValue) -> f64 {
    match v {
        PrometheusValue::Unknown(x) | PrometheusValue::Gauge(x) => x.as_f64(),
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Histogram(_) | PrometheusValue::Summary(_) => 0.0,
    }
}

/// Sum of the samples of `name` whose labels include every pair of `labels`.
fn total(s: &[Series], name: &str, labels: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|x| {
            x.name == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|x| scalar(&x.value))
        .sum()
}

async fn metrics(app: &crate::helpers::TestApp) -> Vec<Series> {
    let r = app.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    scrape(&r.text().await.unwrap())
}

#[actix_web::test]
async fn metrics_parse_as_prometheus_text_and_order_and_fill_counters_move_when_an_order_fills() {
    use crate::execution::{body, limit_buy, open_position, price, ready};
    use crate::helpers::OPERATOR;
    let app = spawn_app().await;
    ready(&app).await;
    // Counters are process-wide and other tests run alongside: compare before and after.
    let before = metrics(&app).await;
    let filled = [("status", "filled"), ("symbol", "BTC/USDT")];
    let fills = [("symbol", "BTC/USDT")];
    let trades_ok = [("route", "/api/v1/trades"), ("method", "POST"), ("status", "200")];
    let approved = [("status", "approved")];

    let (s, b) = body(
        app.post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("1000")))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    price(&app, "49990");
    let position = open_position(&app).await;

    let mut after = metrics(&app).await;
    for _ in 0..50 {
        if total(&after, "triplegain_orders_total", &filled) > total(&before, "triplegain_orders_total", &filled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = metrics(&app).await;
    }
    let moved = |name: &str, labels: &[(&str, &str)]| total(&after, name, labels) - total(&before, name, labels);
    assert!(moved("triplegain_orders_total", &filled) >= 1.0, "orders by status");
    assert!(moved("triplegain_fills_total", &fills) >= 1.0, "fills");
    assert!(
        moved("triplegain_http_requests_total", &trades_ok) >= 1.0,
        "HTTP by route pattern"
    );
    assert!(
        moved("triplegain_risk_verdicts_total", &approved) >= 1.0,
        "risk verdicts"
    );
    assert!(moved("triplegain_bus_messages_total", &[("topic", "execution_events")]) >= 2.0);
    // The position opened by the fill is this app's only one (gauges are overwritten by the
    // scrape of whichever app renders; this app's scrape is the last here).
    assert_eq!(position["symbol"], "BTC/USDT");
    assert!(total(&after, "triplegain_open_positions", &fills) >= 1.0);
    assert!(total(&after, "triplegain_equity_usd", &[]) > 0.0);
    // Routes are labelled with the pattern, never the raw path.
    let pid = position["id"].as_str().unwrap();
    let r = app
        .get(&format!("/api/v1/positions/{pid}"), Some(crate::helpers::VIEWER))
        .await;
    assert_eq!(r.status(), 200);
    let latest = metrics(&app).await;
    let routes: BTreeSet<&str> = latest
        .iter()
        .filter(|x| x.name == "triplegain_http_requests_total")
        .filter_map(|x| x.labels.get("route").map(String::as_str))
        .collect();
    let by_pattern = total(
        &latest,
        "triplegain_http_requests_total",
        &[("route", "/api/v1/positions/{id}")],
    );
    assert!(by_pattern >= 1.0, "{routes:?}");
    assert!(latest.iter().all(|x| !x.labels.values().any(|v| v.contains(pid))));
    // Latency is a histogram with buckets.
    let histogram = latest
        .iter()
        .find(|x| x.name == "triplegain_http_request_duration_seconds")
        .expect("HTTP latency histogram");
    assert!(
        matches!(&histogram.value, PrometheusValue::Histogram(h) if h.buckets.len() > 5),
        "{histogram:?}"
    );
    for name in [
        "triplegain_actor_starts_total",
        "triplegain_actor_restarts_total",
        "triplegain_actor_mailbox_drops_total",
    ] {
        assert!(latest.iter().any(|x| x.name == name), "{name}");
    }
    assert!(
        total(
            &latest,
            "triplegain_actor_starts_total",
            &[("actor", "execution_manager")]
        ) >= 1.0
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn model_calls_are_counted_per_provider_with_latency_errors_and_cost() {
    use triplegain::llm::{OpenAiCompatibleClient, RetryPolicy};
    use triplegain_actors::ports::{ModelClient, ModelRequest};
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let app = spawn_app().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ok/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-metrics-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "model": "deepseek-chat",
            "choices": [{"message": {"role": "assistant", "content": "{}"}}],
            "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/down/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    // A provider name of its own, so parallel tests cannot move these series.
    let provider = format!("metrics-test-{}", uuid::Uuid::new_v4().simple());
    let key = || Some(secrecy::SecretString::from("sk-metrics-test"));
    let ok = OpenAiCompatibleClient::new(provider.clone(), format!("{}/ok/v1", server.uri()), key())
        .with_retry(RetryPolicy::none());
    let down = OpenAiCompatibleClient::new(provider.clone(), format!("{}/down/v1", server.uri()), key())
        .with_retry(RetryPolicy::none());
    let request = || ModelRequest {
        model: "deepseek-chat".into(),
        system_prompt: "s".into(),
        user_prompt: "u".into(),
        max_tokens: 16,
        temperature: 0.0,
        timeout_ms: 5_000,
    };
    ok.complete(request()).await.unwrap();
    ok.complete(request()).await.unwrap();
    assert!(down.complete(request()).await.is_err());

    let m = metrics(&app).await;
    let p = [("provider", provider.as_str())];
    assert_eq!(total(&m, "triplegain_llm_calls_total", &[p[0], ("outcome", "ok")]), 2.0);
    assert_eq!(
        total(&m, "triplegain_llm_calls_total", &[p[0], ("outcome", "error")]),
        1.0
    );
    assert_eq!(
        total(&m, "triplegain_llm_errors_total", &[p[0], ("kind", "provider")]),
        1.0
    );
    assert_eq!(
        total(&m, "triplegain_llm_tokens_total", &[p[0], ("direction", "input")]),
        2_000_000.0
    );
    // deepseek-chat input at $0.14 per million tokens, twice.
    assert!((total(&m, "triplegain_llm_cost_usd", &p) - 0.28).abs() < 1e-9);
    let latency = m
        .iter()
        .find(|x| x.name == "triplegain_llm_latency_seconds" && x.labels.get("provider") == Some(&provider))
        .expect("latency histogram");
    match &latency.value {
        PrometheusValue::Histogram(h) => {
            assert_eq!(h.count, Some(3), "{h:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    app.shutdown().await;
}
