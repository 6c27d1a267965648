//! Coordinator status and task control, the risk state and reset, and the decision trail.

use super::auth::{Admin, Operator, Viewer};
use super::error::{ApiError, JsonBody};
use super::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use triplegain_actors::coordinator::{GetReport, TaskCommand, TaskCommandKind, TaskName};
use triplegain_actors::domain::CorrelationId;
use triplegain_actors::ports::DecisionRecord;
use triplegain_actors::risk::{GetRiskState, ResetRisk, ResetScope, RiskResetError};
use uuid::Uuid;

const ACTOR_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_DECISIONS: i64 = 50;
const MAX_DECISIONS: i64 = 500;

/// Coordinator state, degradation level, task clocks and statistics.
#[utoipa::path(get, path = "/api/v1/coordinator/status", security(("bearer" = [])),
    responses((status = 200, description = "state, degradation, tasks with last/next run, statistics", body = triplegain_actors::coordinator::actor::CoordinatorReport)))]
pub async fn coordinator_status(_auth: Viewer, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let report = state
        .coordinator
        .send(GetReport)
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("coordinator", &e))?
        .map_err(|e| ApiError::from_actor("coordinator", &e))?;
    Ok(HttpResponse::Ok().json(report))
}

/// Run a task now, or enable / disable it.
#[utoipa::path(post, path = "/api/v1/coordinator/tasks/{task}/{command}", security(("bearer" = [])),
    params(("task" = TaskName, Path, description = "the task"),
           ("command" = triplegain_actors::coordinator::actor::TaskCommandKind, Path, description = "what to do")),
    responses((status = 200, description = "the task", body = triplegain_actors::coordinator::actor::TaskView), (status = 403, description = "operator role required"),
              (status = 404, description = "unknown task or command")))]
pub async fn task_command(
    auth: Operator,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (task, command) = path.into_inner();
    let route = format!("/api/v1/coordinator/tasks/{task}/{command}");
    let Ok(name) = TaskName::parse(&task) else {
        state
            .audit(&auth.caller, "POST", &route, None, 404, "unknown task")
            .await;
        return Err(ApiError::not_found(format!(
            "unknown task {task:?}; tasks are ta_analysis, regime_detection, sentiment_analysis, trading_decision, portfolio_check"
        )));
    };
    let kind = match command.as_str() {
        "run" => TaskCommandKind::Run,
        "enable" => TaskCommandKind::Enable,
        "disable" => TaskCommandKind::Disable,
        _ => {
            state
                .audit(&auth.caller, "POST", &route, None, 404, "unknown command")
                .await;
            return Err(ApiError::not_found(format!(
                "unknown command {command:?}; expected run, enable or disable"
            )));
        }
    };
    let view = state
        .coordinator
        .send(TaskCommand {
            task: name,
            command: kind,
            by: auth.caller.name.clone(),
        })
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("coordinator", &e))?
        .map_err(|e| ApiError::from_actor("coordinator", &e))?;
    state.audit(&auth.caller, "POST", &route, None, 200, "ok").await;
    Ok(HttpResponse::Ok().json(view))
}

/// The same as `POST /api/v1/coordinator/tasks/{task}/{command}` (the singular path is kept for
/// existing scripts).
#[utoipa::path(post, path = "/api/v1/coordinator/task/{task}/{command}", security(("bearer" = [])),
    params(("task" = TaskName, Path, description = "the task"),
           ("command" = triplegain_actors::coordinator::actor::TaskCommandKind, Path, description = "what to do")),
    responses((status = 200, description = "the task", body = triplegain_actors::coordinator::actor::TaskView), (status = 403, description = "operator role required"),
              (status = 404, description = "unknown task or command")))]
pub async fn task_command_alias(
    auth: Operator,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    task_command(auth, state, path).await
}

/// The risk engine's state: breakers, P&L periods, exposure, cooldown.
#[utoipa::path(get, path = "/api/v1/risk/state", security(("bearer" = [])),
    responses((status = 200, description = "risk state", body = triplegain_actors::risk::engine::RiskStateView)))]
pub async fn risk_state(_auth: Viewer, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = state
        .risk
        .send(GetRiskState)
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("risk_engine", &e))?
        .map_err(|e| ApiError::from_actor("risk_engine", &e))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Body of `POST /api/v1/risk/reset`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskResetBody {
    /// `cooldown`, `drawdown` or `all`.
    #[schema(pattern = "^(cooldown|drawdown|all)$", example = "cooldown")]
    pub scope: String,
}

/// Reset risk breakers (admin).
#[utoipa::path(post, path = "/api/v1/risk/reset", security(("bearer" = [])), request_body = RiskResetBody,
    responses((status = 200, description = "risk state after the reset", body = triplegain_actors::risk::engine::RiskStateView), (status = 422, description = "invalid scope"),
              (status = 403, description = "admin role required"), (status = 409, description = "refused")))]
pub async fn risk_reset(
    auth: Admin,
    state: web::Data<AppState>,
    body: JsonBody<RiskResetBody>,
) -> Result<HttpResponse, ApiError> {
    let route = "/api/v1/risk/reset";
    let raw = serde_json::to_vec(&body.0).unwrap_or_default();
    let scope = match body.0.scope.as_str() {
        "cooldown" => ResetScope::Cooldown,
        "drawdown" => ResetScope::Drawdown,
        "all" => ResetScope::All,
        other => {
            state
                .audit(&auth.caller, "POST", route, Some(&raw), 422, "invalid scope")
                .await;
            return Err(ApiError::validation(
                "scope",
                format!("invalid scope {other:?}; expected cooldown, drawdown or all"),
            ));
        }
    };
    let res = state
        .risk
        .send(ResetRisk { admin: true, scope })
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("risk_engine", &e))?;
    match res {
        Ok(view) => {
            state.audit(&auth.caller, "POST", route, Some(&raw), 200, "ok").await;
            Ok(HttpResponse::Ok().json(view))
        }
        Err(RiskResetError::Refused(e)) => {
            let why = e.to_string();
            state.audit(&auth.caller, "POST", route, Some(&raw), 409, &why).await;
            Err(ApiError::conflict(why))
        }
        Err(RiskResetError::Actor(e)) => Err(ApiError::from_actor("risk_engine", &e)),
    }
}

/// Query of `GET /api/v1/decisions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    #[param(pattern = "^[A-Za-z0-9]{2,10}/[A-Za-z0-9]{2,10}$", example = "BTC/USDT")]
    pub symbol: Option<String>,
    /// 1..=500; default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Recent decision records, newest first.
#[utoipa::path(get, path = "/api/v1/decisions", security(("bearer" = [])), params(DecisionsQuery),
    responses((status = 200, description = "recent decision records, newest first", body = Vec<DecisionRecord>), (status = 422, description = "invalid limit")))]
pub async fn recent_decisions(
    _auth: Viewer,
    state: web::Data<AppState>,
    query: web::Query<DecisionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_DECISIONS);
    if !(1..=MAX_DECISIONS).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit must be 1..={MAX_DECISIONS}"),
        ));
    }
    let symbol = query
        .symbol
        .as_deref()
        .map(|s| {
            triplegain_actors::domain::Symbol::parse(s)
                .map(|s| s.to_string())
                .map_err(|e| ApiError::bad_request(e.to_string()).with_field("symbol"))
        })
        .transpose()?;
    let limit = usize::try_from(limit).unwrap_or(0);
    let out = state
        .stores
        .audit
        .recent_decisions(symbol, limit)
        .await
        .map_err(|e| ApiError::internal(format!("decisions unavailable: {e}")))?;
    Ok(HttpResponse::Ok().json(out))
}

/// One decision chain, in order.
#[utoipa::path(get, path = "/api/v1/decisions/{correlation_id}", security(("bearer" = [])),
    params(("correlation_id" = Uuid, Path, description = "UUID of the chain")),
    responses((status = 200, description = "the chain, oldest first", body = super::views::DecisionChain), (status = 400, description = "not a UUID")))]
pub async fn decision_chain(
    _auth: Viewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let cid = Uuid::parse_str(&raw)
        .map_err(|_| ApiError::bad_request(format!("{raw:?} is not a UUID")).with_field("correlation_id"))?;
    let chain = state
        .stores
        .audit
        .decision_chain(CorrelationId(cid))
        .await
        .map_err(|e| ApiError::internal(format!("decision chain unavailable: {e}")))?;
    Ok(HttpResponse::Ok().json(super::views::DecisionChain {
        correlation_id: cid,
        records: chain,
    }))
}
