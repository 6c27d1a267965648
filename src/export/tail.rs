//! `triplegain tail [--account A] [--topic T]`: prints the live stream from JetStream, one JSON
//! object a line. It is also the reference consumer for people who build on the stream: an
//! ordered, ephemeral consumer (no state on the server, resumes by itself after a reconnect)
//! filtered by subject where one subject covers the request, else by the `TripleGain-Account`
//! and `TripleGain-Topic` headers, with the event id from `Nats-Msg-Id`.

use super::{ExportSettings, HEADER_TOPIC};
use futures::StreamExt;
use std::io::Write;

/// What to print.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// One account (default every account).
    pub account: Option<String>,
    /// One topic (default every topic).
    pub topic: Option<String>,
    /// Start from the oldest event the stream keeps instead of new ones only.
    pub from_start: bool,
    /// Stop after this many events.
    pub count: Option<u64>,
}

/// The consumer's subject filter for `opts`: one topic of one account or of every account
/// (events with a symbol; the symbol-less topics are matched on their headers), else the whole
/// stream.
pub fn filter_subject(settings: &ExportSettings, opts: &TailOptions) -> String {
    match (&opts.topic, &opts.account) {
        (Some(t), a) if t == "execution_events" || super::ANALYSIS_TOPICS.contains(&t.as_str()) => {
            format!("{}.{}.{t}.>", settings.subject_prefix, a.as_deref().unwrap_or("*"))
        }
        _ => String::new(),
    }
}

/// Streams events to `out` until `count` events were printed (or forever).
///
/// # Errors
/// NATS unreachable, the stream missing, or `out` failing.
pub async fn run(settings: &ExportSettings, opts: &TailOptions, out: &mut impl Write) -> anyhow::Result<u64> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    let client = super::connect(settings, "triplegain-tail", true).await?;
    let js = super::jetstream(client, settings);
    let stream = js
        .get_stream(&settings.stream)
        .await
        .map_err(|e| anyhow::anyhow!("JetStream stream {} (export.stream): {e}", settings.stream))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter_subject(settings, opts),
            deliver_policy: if opts.from_start {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("consuming: {e}"))?;
    let mut printed = 0u64;
    if opts.count == Some(0) {
        return Ok(0);
    }
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("consuming: {e}"))?;
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let topic = header(HEADER_TOPIC);
        if let Some(want) = &opts.account {
            if header(super::HEADER_ACCOUNT).as_deref() != Some(want.as_str()) {
                continue;
            }
        }
        if let Some(want) = &opts.topic {
            if topic.as_deref() != Some(want.as_str()) {
                continue;
            }
        }
        let event: serde_json::Value = serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&msg.payload).into_owned()));
        let seq = msg.info().map(|i| i.stream_sequence).ok();
        let line = serde_json::json!({
            "subject": msg.subject.to_string(),
            "id": msg
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned()),
            "topic": topic,
            "stream_seq": seq,
            "event": event,
        });
        writeln!(out, "{line}")?;
        out.flush()?;
        printed += 1;
        if opts.count.is_some_and(|n| printed >= n) {
            break;
        }
    }
    Ok(printed)
}
