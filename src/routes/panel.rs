//! The web control panel: static assets embedded in the binary (no CDN, works offline) served at
//! `/`, plus `GET /api/v1/session`, which tells the panel who the token belongs to so it shows
//! only the controls that role may use. Every action the panel offers goes through the API and
//! its roles; the token stays in the browser's session storage.

use super::auth::Viewer;
use super::state::AppState;
use actix_web::{http::header, web, HttpResponse};

const INDEX_HTML: &str = include_str!("../panel/index.html");
const APP_JS: &str = include_str!("../panel/app.js");
const STYLE_CSS: &str = include_str!("../panel/style.css");

/// The panel's security headers: nothing is loaded from anywhere but this server.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// Registers the panel's static routes (outside the API table: they are not API routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/panel/app.js", web::get().to(app_js))
        .route("/panel/style.css", web::get().to(style_css));
}

/// Who the token belongs to, its role, the trading mode and the business clock.
#[utoipa::path(get, path = "/api/v1/session", security(("bearer" = [])),
    responses((status = 200, description = "the caller's name and role, the trading mode and the business time", body = super::views::Session)))]
pub async fn session(auth: Viewer, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(super::views::Session {
        name: auth.caller.name.clone(),
        role: auth.caller.role,
        mode: state.mode,
        business_time: state.clock.now(),
    })
}
