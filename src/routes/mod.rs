//! The HTTP control API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.

pub mod agents;
pub mod auth;
pub mod error;
pub mod events;
pub mod execution;
pub mod orchestration;
pub mod portfolio;
mod system;

use crate::startup::AppState;
use actix_web::web;
use utoipa::OpenApi;

pub use error::{ApiError, JsonBody, OptionalJsonBody};

#[derive(OpenApi)]
#[openapi(
    info(title = "TripleGain control API", description = "Control and observe the TripleGain trading system."),
    paths(
        system::healthz,
        system::readyz,
        system::list_actors,
        system::crash_actor,
        system::coordinator_pause,
        system::coordinator_resume,
        system::coordinator_halt,
        system::coordinator_admin_resume,
        // analysis
        agents::latest_output,
        // orchestration
        orchestration::coordinator_status,
        orchestration::task_command,
        orchestration::risk_state,
        orchestration::risk_reset,
        orchestration::recent_decisions,
        orchestration::decision_chain,
        // execution
        execution::list_positions,
        execution::get_position,
        execution::close_position,
        execution::modify_position,
        execution::list_orders,
        execution::get_order,
        execution::cancel_order,
        execution::list_trades,
        execution::place_trade,
        execution::validate_trade,
        // portfolio
        portfolio::allocation,
        portfolio::rebalance,
        portfolio::hodl_bags,
        portfolio::hodl_history,
        // events
        events::events,
    ),
    components(schemas(
        error::ErrorEnvelope,
        error::ErrorBody,
        system::ControlBody,
        // orchestration
        orchestration::RiskResetBody,
        // execution
        execution::CloseBody,
        execution::ModifyBody,
        execution::ManualTradeBody,
        // portfolio
        portfolio::RebalanceBody,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state)
        .route("/healthz", web::get().to(system::healthz))
        .route("/readyz", web::get().to(system::readyz))
        .route("/metrics", web::get().to(system::metrics))
        .service(
            web::scope("/api/v1")
                .route("/openapi.json", web::get().to(openapi_json))
                .configure(agents::configure)
                .route("/actors", web::get().to(system::list_actors))
                .route("/actors/{name}/crash", web::post().to(system::crash_actor))
                .route("/coordinator/pause", web::post().to(system::coordinator_pause))
                .route("/coordinator/resume", web::post().to(system::coordinator_resume))
                .route("/coordinator/halt", web::post().to(system::coordinator_halt))
                .route(
                    "/coordinator/admin-resume",
                    web::post().to(system::coordinator_admin_resume),
                )
                .configure(orchestration::configure)
                .configure(execution::configure)
                .configure(portfolio::configure)
                .configure(events::configure),
        );
}
