//! Fleet commands: `pause`, `resume` and `halt` as NATS request-reply on
//! `<prefix>.<account>.control.<command>` (this account) and `<prefix>.fleet.control.<command>`
//! (every account at once; each server answers).
//!
//! A request carries an API token of role operator or above, either as the header
//! `Authorization: Bearer <token>` or in the JSON payload `{"token": "...", "reason": "..."}`.
//! Every request, refused or not, is recorded in `api_audit_log` (method `NATS`, route the
//! subject). The reply is JSON: `{"account", "ok": true, "status": {...}}` or
//! `{"account", "ok": false, "error": {"code", "message"}}`.

use super::FLEET;
use crate::routes::auth::{Caller, TokenTable};
use crate::routes::state::AppState;
use crate::settings::Role;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::coordinator::{Control, InvalidTransition, Trigger};

const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The payload of a control request (every field optional).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// The API token, when not sent in the `Authorization` header.
    pub token: Option<String>,
    /// Why (kept in the audit log and, for a halt, as the halt reason).
    pub reason: Option<String>,
}

/// The subjects this account answers on.
pub fn subjects(prefix: &str, account: &str) -> [String; 2] {
    [
        format!("{prefix}.{account}.control.*"),
        format!("{prefix}.{FLEET}.control.*"),
    ]
}

fn reply_error(account: &str, code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"account": account, "ok": false, "error": {"code": code, "message": message}})
}

/// Starts answering control requests; the task ends at `stop`.
///
/// # Errors
/// When the subscriptions cannot be made.
pub async fn start(
    client: async_nats::Client,
    prefix: &str,
    account: &str,
    state: actix_web::web::Data<AppState>,
    tokens: Arc<TokenTable>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let [own, fleet] = subjects(prefix, account);
    let a = client
        .subscribe(own.clone())
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to {own}: {e}"))?;
    let b = client
        .subscribe(fleet.clone())
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to {fleet}: {e}"))?;
    // The server knows the subscriptions before the server reports ready, when NATS is up. When
    // it is not, the start does not wait for it (a flush waits for the connection): the client
    // subscribes again once it connects.
    if client.connection_state() == async_nats::connection::State::Connected {
        match tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "control subscriptions not flushed yet"),
            Err(_) => tracing::warn!("control subscriptions not flushed within 2 s"),
        }
    } else {
        tracing::warn!("NATS not connected: control subjects answer once it is");
    }
    let mut requests = futures::stream::select(a, b);
    let account = account.to_owned();
    // A tokio task rather than one on the actix LocalSet: the NATS subscribers must be dropped
    // inside the runtime, even when the system is torn down without a shutdown.
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                msg = requests.next() => {
                    let Some(msg) = msg else { return };
                    let reply = handle(&state, &tokens, &account, &msg).await;
                    if let Some(to) = msg.reply.clone() {
                        let body = serde_json::to_vec(&reply).unwrap_or_default();
                        if let Err(e) = client.publish(to, body.into()).await {
                            tracing::warn!(error = %e, "control reply not sent");
                        }
                    }
                }
            }
        }
    }))
}

fn bearer(msg: &async_nats::Message) -> Option<String> {
    let value = msg.headers.as_ref()?.get("Authorization")?.as_str().trim().to_owned();
    value
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
        .or(Some(value))
}

/// Authenticates, executes and audits one request; returns the reply.
async fn handle(state: &AppState, tokens: &TokenTable, account: &str, msg: &async_nats::Message) -> serde_json::Value {
    let subject = msg.subject.to_string();
    let command = subject.rsplit('.').next().unwrap_or_default().to_owned();
    let body: ControlRequest = if msg.payload.is_empty() {
        ControlRequest::default()
    } else {
        match serde_json::from_slice(&msg.payload) {
            Ok(b) => b,
            Err(e) => {
                let anon = Caller {
                    name: "anonymous".into(),
                    role: Role::Viewer,
                };
                state
                    .audit(&anon, "NATS", &subject, None, 400, "malformed request")
                    .await;
                return reply_error(
                    account,
                    "bad_request",
                    &format!("payload is not a control request: {e}"),
                );
            }
        }
    };
    let token = bearer(msg).or(body.token.clone());
    let Some(caller) = token.as_deref().and_then(|t| tokens.identify(t)) else {
        let anon = Caller {
            name: "anonymous".into(),
            role: Role::Viewer,
        };
        state
            .audit(&anon, "NATS", &subject, None, 401, "missing or unknown token")
            .await;
        return reply_error(account, "unauthorized", "a valid API token is required");
    };
    let reason_bytes = body.reason.as_deref().map(str::as_bytes);
    if caller.role < Role::Operator {
        state
            .audit(&caller, "NATS", &subject, reason_bytes, 403, "operator role required")
            .await;
        return reply_error(account, "forbidden", "operator role required");
    }
    let trigger = match command.as_str() {
        "pause" => Trigger::Pause,
        "resume" => Trigger::Resume,
        "halt" => Trigger::Halt,
        other => {
            state
                .audit(&caller, "NATS", &subject, reason_bytes, 404, "unknown command")
                .await;
            return reply_error(
                account,
                "not_found",
                &format!("unknown command {other:?}; commands are pause, resume, halt"),
            );
        }
    };
    let sent = state
        .coordinator
        .send(Control {
            trigger,
            by: caller.name.clone(),
            reason: body.reason.clone(),
        })
        .timeout(COORDINATOR_TIMEOUT)
        .await;
    match sent {
        Ok(Ok(Ok(status))) => {
            state.audit(&caller, "NATS", &subject, reason_bytes, 200, "ok").await;
            serde_json::json!({"account": account, "ok": true, "status": status})
        }
        Ok(Ok(Err(InvalidTransition { from, reason: why, .. }))) => {
            state.audit(&caller, "NATS", &subject, reason_bytes, 409, why).await;
            reply_error(account, "conflict", &format!("coordinator is {from:?}: {why}"))
        }
        Ok(Err(e)) => {
            state
                .audit(&caller, "NATS", &subject, reason_bytes, 503, "coordinator error")
                .await;
            reply_error(account, "unavailable", &format!("coordinator: {e}"))
        }
        Err(e) => {
            state
                .audit(
                    &caller,
                    "NATS",
                    &subject,
                    reason_bytes,
                    503,
                    "coordinator not available",
                )
                .await;
            reply_error(account, "unavailable", &format!("coordinator not available: {e}"))
        }
    }
}
