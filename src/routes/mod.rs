//! The HTTP control API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.

pub mod agents;
pub mod auth;
pub mod error;
pub mod events;
pub mod execution;
pub mod idempotency;
pub mod limits;
pub mod orchestration;
pub mod panel;
pub mod portfolio;
pub mod state;
mod system;
pub mod views;

use actix_web::http::Method;
use actix_web::web;
use state::AppState;
use utoipa::OpenApi;

pub use error::{ApiError, JsonBody, OptionalJsonBody};

#[derive(OpenApi)]
#[openapi(
    info(title = "TripleGain control API", description = "Control and observe the TripleGain trading system."),
    paths(
        system::healthz,
        system::readyz,
        system::metrics,
        openapi_json,
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
        orchestration::task_command_alias,
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
        // panel
        panel::session,
    ),
    components(schemas(
        error::ErrorEnvelope,
        error::ErrorBody,
        // path parameters (schemas of bodies and responses are collected from the paths)
        triplegain_actors::coordinator::TaskCommandKind,
        triplegain_actors::coordinator::TaskName,
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
    modifiers(&BearerAuth, &ErrorResponses)
)]
pub struct ApiDoc;

/// Documents the error responses every route can give, each with the `ErrorEnvelope` schema:
/// 401 (no or unknown token), 429 (rate limit, failed-authentication throttle), 503 (a component
/// not available) everywhere under `/api/v1`; 400, 413, 415 and 422 where a body is read; 403
/// and 409 on control routes. Success responses without a declared body get a JSON object
/// schema, so every response of the document has one.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::ContentBuilder;
        use utoipa::openapi::path::Operation;
        use utoipa::openapi::schema::{ObjectBuilder, Ref};
        use utoipa::openapi::{RefOr, ResponseBuilder};

        fn error(desc: &str) -> RefOr<utoipa::openapi::Response> {
            let content = ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorEnvelope"))))
                .build();
            RefOr::T(
                ResponseBuilder::new()
                    .description(desc)
                    .content("application/json", content)
                    .build(),
            )
        }
        fn add(op: &mut Operation, path: &str, control: bool) {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            // An optional body is absent or one object, never `null` (the server refuses
            // anything but one JSON object): the derive's `oneOf [null, T]` becomes `T`, not required.
            if let Some(body) = op.request_body.as_mut() {
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(utoipa::openapi::schema::Schema::OneOf(one))) = &content.schema {
                        let inner: Vec<_> = one
                            .items
                            .iter()
                            .filter(|s| {
                                !matches!(s, RefOr::T(utoipa::openapi::schema::Schema::Object(o))
                                    if o.schema_type == utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::Null))
                            })
                            .cloned()
                            .collect();
                        if inner.len() == 1 && inner.len() < one.items.len() {
                            content.schema = inner.into_iter().next();
                            body.required = Some(utoipa::openapi::Required::False);
                        }
                    }
                }
            }
            let mut codes: Vec<(&str, &str)> = Vec::new();
            if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                codes.push(("400", "a malformed path or query parameter; `field` names it"));
            }
            if secured {
                codes.push(("401", "no or unknown API token"));
                codes.push(("429", "rate limit or failed-authentication throttle; see Retry-After"));
            }
            if path.starts_with(API_PREFIX) && path != "/api/v1/openapi.json" {
                codes.push(("503", "a component is not available"));
            }
            if control {
                codes.push(("400", "malformed body or parameter; `field` names it"));
                codes.push(("403", "the token's role is too low"));
                codes.push(("409", "not allowed in the current state"));
                codes.push(("413", "body larger than server.max_body_bytes"));
                codes.push(("415", "Content-Type is not application/json"));
                codes.push(("422", "a field out of range; `field` names it"));
            }
            for (code, desc) in codes {
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| error(desc));
            }
            for (code, resp) in op.responses.responses.iter_mut() {
                if !code.starts_with('2') {
                    continue;
                }
                if let RefOr::T(r) = resp {
                    if r.content.is_empty() {
                        let schema = ObjectBuilder::new().build();
                        r.content.insert(
                            "application/json".to_owned(),
                            ContentBuilder::new().schema(Some(schema)).build(),
                        );
                    }
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            if let Some(op) = item.get.as_mut() {
                add(op, path, false);
            }
            for op in [
                item.post.as_mut(),
                item.patch.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                add(op, path, true);
            }
        }
    }
}

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

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The prefix of the control API.
pub const API_PREFIX: &str = "/api/v1";

/// One registered route.
pub struct RouteDef {
    pub method: Method,
    /// Under its scope: `/positions/{id}` for `/api/v1/positions/{id}`.
    pub path: &'static str,
    route: actix_web::Route,
}

fn r<F, Args>(method: Method, path: &'static str, handler: F) -> RouteDef
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    RouteDef {
        route: web::method(method.clone()).to(handler),
        method,
        path,
    }
}

/// Routes outside `/api/v1`: probes and the Prometheus scrape.
fn root_routes() -> Vec<RouteDef> {
    vec![
        r(Method::GET, "/healthz", system::healthz),
        r(Method::GET, "/readyz", system::readyz),
        r(Method::GET, "/metrics", system::metrics),
    ]
}

/// Every route under `/api/v1`: the one table both the server and [`route_list`] read.
fn api_routes() -> Vec<RouteDef> {
    use Method as M;
    vec![
        r(M::GET, "/openapi.json", openapi_json),
        // system
        r(M::GET, "/actors", system::list_actors),
        r(M::POST, "/actors/{name}/crash", system::crash_actor),
        r(M::POST, "/coordinator/pause", system::coordinator_pause),
        r(M::POST, "/coordinator/resume", system::coordinator_resume),
        r(M::POST, "/coordinator/halt", system::coordinator_halt),
        r(M::POST, "/coordinator/admin-resume", system::coordinator_admin_resume),
        // analysis
        r(M::GET, "/agents/{name}/latest", agents::latest_output),
        // orchestration
        r(M::GET, "/coordinator/status", orchestration::coordinator_status),
        r(
            M::POST,
            "/coordinator/tasks/{task}/{command}",
            orchestration::task_command,
        ),
        r(
            M::POST,
            "/coordinator/task/{task}/{command}",
            orchestration::task_command_alias,
        ),
        r(M::GET, "/risk/state", orchestration::risk_state),
        r(M::POST, "/risk/reset", orchestration::risk_reset),
        r(M::GET, "/decisions", orchestration::recent_decisions),
        r(M::GET, "/decisions/{correlation_id}", orchestration::decision_chain),
        // execution
        r(M::GET, "/positions", execution::list_positions),
        r(M::GET, "/positions/{id}", execution::get_position),
        r(M::PATCH, "/positions/{id}", execution::modify_position),
        r(M::POST, "/positions/{id}/close", execution::close_position),
        r(M::GET, "/orders", execution::list_orders),
        r(M::GET, "/orders/{id}", execution::get_order),
        r(M::POST, "/orders/{id}/cancel", execution::cancel_order),
        r(M::GET, "/trades", execution::list_trades),
        r(M::POST, "/trades", execution::place_trade),
        r(M::POST, "/trades/validate", execution::validate_trade),
        // portfolio
        r(M::GET, "/portfolio/allocation", portfolio::allocation),
        r(M::POST, "/portfolio/rebalance", portfolio::rebalance),
        r(M::GET, "/hodl", portfolio::hodl_bags),
        r(M::GET, "/hodl/history", portfolio::hodl_history),
        // events
        r(M::GET, "/events", events::events),
        // panel
        r(M::GET, "/session", panel::session),
    ]
}

/// Every registered route as (method, full path pattern), in registration order.
pub fn route_list() -> Vec<(Method, String)> {
    root_routes()
        .into_iter()
        .map(|d| (d.method, d.path.to_owned()))
        .chain(
            api_routes()
                .into_iter()
                .map(|d| (d.method, format!("{API_PREFIX}{}", d.path))),
        )
        .collect()
}

/// The methods registered for a concrete path (`{..}` segments match any one segment).
pub fn methods_of(path: &str) -> Vec<Method> {
    let want: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let matches = |pattern: &str| {
        let have: Vec<&str> = pattern.split('/').collect();
        have.len() == want.len()
            && have
                .iter()
                .zip(&want)
                .all(|(p, w)| (p.starts_with('{') && !w.is_empty()) || p == w)
    };
    let mut out: Vec<Method> = route_list()
        .into_iter()
        .filter(|(_, p)| matches(p))
        .map(|(m, _)| m)
        .collect();
    out.dedup();
    out
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state);
    // The web control panel's static assets at `/` (not API routes).
    panel::configure(cfg);
    for d in root_routes() {
        cfg.route(d.path, d.route);
    }
    let mut api = web::scope(API_PREFIX);
    for d in api_routes() {
        api = api.route(d.path, d.route);
    }
    cfg.service(api);
}
