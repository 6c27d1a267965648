//! Health, readiness, metrics, the actor registry, fault injection and the coordinator lifecycle.

use super::auth::{Admin, Operator, Viewer};
use super::error::{ApiError, OptionalJsonBody};
use super::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use triplegain_actors::coordinator::{Control, InvalidTransition, Trigger};

const ACTOR_TIMEOUT: Duration = Duration::from_secs(5);

/// Process is alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", body = super::views::Liveness)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(super::views::Liveness { status: "alive" })
}

/// Ready: the database answers (when configured) and every core actor is alive.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready", body = super::views::Readiness), (status = 503, description = "not ready, with reasons", body = super::views::Readiness)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut reasons = state.registry.unready_reasons();
    if state.stores.health.durable() {
        match tokio::time::timeout(Duration::from_secs(3), state.stores.health.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => reasons.push(format!("database: {e}")),
            Err(_) => reasons.push("database: ping timed out".into()),
        }
    }
    for name in state.core_actors.iter() {
        if !state.registry.ping(name, Duration::from_secs(2)).await
            && !reasons.iter().any(|r| r.contains(name.as_str()))
        {
            reasons.push(format!("core actor {name} does not answer"));
        }
    }
    if reasons.is_empty() {
        HttpResponse::Ok().json(super::views::Readiness {
            status: super::views::ReadyStatus::Ready,
            reasons,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(super::views::Readiness {
            status: super::views::ReadyStatus::NotReady,
            reasons,
        })
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::observability::refresh(&state).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// The actor registry.
#[utoipa::path(get, path = "/api/v1/actors", security(("bearer" = [])), responses((status = 200, description = "one record per actor", body = super::views::ActorList)))]
pub async fn list_actors(_auth: Viewer, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(super::views::ActorList {
        actors: state.registry.snapshot(),
        restart_policy: state.registry.policy(),
    })
}

/// Fault injection: the named actor panics inside its next handler (admin, `server.fault_injection`).
#[utoipa::path(post, path = "/api/v1/actors/{name}/crash", security(("bearer" = [])),
    params(("name" = String, Path, description = "actor name")),
    responses((status = 202, description = "the actor crashed and is restarting", body = super::views::FaultInjected), (status = 403, description = "fault injection disabled or role too low"), (status = 404, description = "unknown actor")))]
pub async fn crash_actor(
    auth: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !state.fault_injection {
        return Err(ApiError::forbidden(
            "fault injection is disabled (server.fault_injection: false)",
        ));
    }
    let name = name.into_inner();
    if state.registry.get(&name).is_none() {
        return Err(ApiError::not_found(format!("no actor named {name:?}")));
    }
    tracing::warn!(actor = %name, by = %auth.caller.name, "fault injected");
    state
        .registry
        .inject_fault(&name)
        .await
        .map_err(|e| ApiError::new(actix_web::http::StatusCode::CONFLICT, "fault_not_delivered", e))?;
    state
        .audit(
            &auth.caller,
            "POST",
            "/api/v1/actors/{name}/crash",
            Some(name.as_bytes()),
            202,
            "crashed",
        )
        .await;
    let record = state.registry.get(&name);
    Ok(HttpResponse::Accepted().json(super::views::FaultInjected {
        actor: name,
        injected: true,
        record,
    }))
}

/// Optional body of a coordinator command.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlBody {
    /// Why (kept in the audit log and, for a halt, as the halt reason).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

async fn control(
    state: &AppState,
    caller: &super::auth::Caller,
    route: &str,
    trigger: Trigger,
    reason: Option<String>,
) -> Result<HttpResponse, ApiError> {
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        state.audit(caller, "POST", route, None, 422, "reason too long").await;
        return Err(ApiError::validation("reason", "reason is longer than 500 characters"));
    }
    let res = state
        .coordinator
        .send(Control {
            trigger,
            by: caller.name.clone(),
            reason: reason.clone(),
        })
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("coordinator", &e))?
        .map_err(|e| ApiError::from_actor("coordinator", &e))?;
    let body = reason.as_deref().map(str::as_bytes);
    match res {
        Ok(status) => {
            state.audit(caller, "POST", route, body, 200, "ok").await;
            Ok(HttpResponse::Ok().json(status))
        }
        Err(InvalidTransition { from, reason: why, .. }) => {
            state.audit(caller, "POST", route, body, 409, why).await;
            Err(ApiError::conflict(format!("coordinator is {from:?}: {why}")))
        }
    }
}

fn reason_of(body: OptionalJsonBody<ControlBody>) -> Option<String> {
    body.0.and_then(|b| b.reason)
}

/// Pause trading (analysis keeps running).
#[utoipa::path(post, path = "/api/v1/coordinator/pause", security(("bearer" = [])), request_body(content = Option<ControlBody>), responses((status = 200, description = "paused", body = triplegain_actors::coordinator::actor::CoordinatorStatus), (status = 409, description = "invalid transition")))]
pub async fn coordinator_pause(
    auth: Operator,
    state: web::Data<AppState>,
    body: OptionalJsonBody<ControlBody>,
) -> Result<HttpResponse, ApiError> {
    control(
        &state,
        &auth.caller,
        "/api/v1/coordinator/pause",
        Trigger::Pause,
        reason_of(body),
    )
    .await
}

/// Resume from PAUSED.
#[utoipa::path(post, path = "/api/v1/coordinator/resume", security(("bearer" = [])), request_body(content = Option<ControlBody>), responses((status = 200, description = "running", body = triplegain_actors::coordinator::actor::CoordinatorStatus), (status = 409, description = "invalid transition")))]
pub async fn coordinator_resume(
    auth: Operator,
    state: web::Data<AppState>,
    body: OptionalJsonBody<ControlBody>,
) -> Result<HttpResponse, ApiError> {
    control(
        &state,
        &auth.caller,
        "/api/v1/coordinator/resume",
        Trigger::Resume,
        reason_of(body),
    )
    .await
}

/// Halt trading.
#[utoipa::path(post, path = "/api/v1/coordinator/halt", security(("bearer" = [])), request_body(content = Option<ControlBody>), responses((status = 200, description = "halted", body = triplegain_actors::coordinator::actor::CoordinatorStatus), (status = 409, description = "invalid transition")))]
pub async fn coordinator_halt(
    auth: Operator,
    state: web::Data<AppState>,
    body: OptionalJsonBody<ControlBody>,
) -> Result<HttpResponse, ApiError> {
    control(
        &state,
        &auth.caller,
        "/api/v1/coordinator/halt",
        Trigger::Halt,
        reason_of(body),
    )
    .await
}

/// Resume from HALTED (admin): only once no actor is escalated and the risk engine is not halted.
#[utoipa::path(post, path = "/api/v1/coordinator/admin-resume", security(("bearer" = [])), request_body(content = Option<ControlBody>), responses((status = 200, description = "running", body = triplegain_actors::coordinator::actor::CoordinatorStatus), (status = 409, description = "cause not cleared or not halted")))]
pub async fn coordinator_admin_resume(
    auth: Admin,
    state: web::Data<AppState>,
    body: OptionalJsonBody<ControlBody>,
) -> Result<HttpResponse, ApiError> {
    // The cause is cleared when no actor is escalated and the risk engine is no longer halted
    // (a tripped drawdown breaker needs `POST /api/v1/risk/reset` first).
    let risk_halted = match state
        .risk
        .send(triplegain_actors::risk::GetRiskState)
        .timeout(ACTOR_TIMEOUT)
        .await
    {
        // The halt the engine learned from the coordinator itself is lifted by this resume.
        Ok(Ok(view)) => view.state.halted,
        _ => true,
    };
    let cause_cleared = state.registry.unready_reasons().is_empty() && !risk_halted;
    control(
        &state,
        &auth.caller,
        "/api/v1/coordinator/admin-resume",
        Trigger::AdminResume { cause_cleared },
        reason_of(body),
    )
    .await
}
