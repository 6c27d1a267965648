//! Routes of this area.

use actix_web::web;

/// Registers the routes of this area under `/api/v1`.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
