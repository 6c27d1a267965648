//! Bearer-token authentication with roles viewer < operator < admin. Tokens are compared as
//! SHA-256 digests in constant time, so neither content nor length leaks through timing.

use super::error::ApiError;
use crate::settings::{ApiToken, Role};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};
use std::marker::PhantomData;
use std::sync::Arc;
use subtle::ConstantTimeEq;

struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The configured tokens.
pub struct TokenTable {
    entries: Vec<Entry>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl TokenTable {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self {
            entries: tokens
                .iter()
                .map(|t| Entry {
                    name: t.name.clone(),
                    role: t.role,
                    digest: digest(t.token.expose()),
                })
                .collect(),
        }
    }

    /// The caller owning `token`, checking every entry (no early exit).
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let d = digest(token);
        let mut found: Option<Caller> = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&d)) && found.is_none() {
                found = Some(Caller {
                    name: e.name.clone(),
                    role: e.role,
                });
            }
        }
        found
    }
}

/// Who made the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

pub trait RoleReq {
    const ROLE: Role;
}

pub struct ViewerRole;
pub struct OperatorRole;
pub struct AdminRole;

impl RoleReq for ViewerRole {
    const ROLE: Role = Role::Viewer;
}
impl RoleReq for OperatorRole {
    const ROLE: Role = Role::Operator;
}
impl RoleReq for AdminRole {
    const ROLE: Role = Role::Admin;
}

/// Extractor: the request carries a valid token of at least role `R`.
pub struct Authed<R: RoleReq> {
    pub caller: Caller,
    _role: PhantomData<R>,
}

pub type Viewer = Authed<ViewerRole>;
pub type Operator = Authed<OperatorRole>;
pub type Admin = Authed<AdminRole>;

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

impl<R: RoleReq> Authed<R> {
    fn check(req: &HttpRequest) -> Result<Self, ApiError> {
        let table = req
            .app_data::<web::Data<Arc<TokenTable>>>()
            .ok_or_else(|| ApiError::internal("token table not configured"))?;
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("authentication required: send Authorization: Bearer <token>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("authentication required: send Authorization: Bearer <token>"))?;
        let caller = table
            .identify(token)
            .ok_or_else(|| ApiError::unauthorized("invalid API token"))?;
        if caller.role < R::ROLE {
            tracing::warn!(token = %caller.name, role = role_name(caller.role), required = role_name(R::ROLE), path = req.path(), "authorization denied");
            return Err(ApiError::forbidden(format!(
                "requires the {} role or higher",
                role_name(R::ROLE)
            )));
        }
        Ok(Self {
            caller,
            _role: PhantomData,
        })
    }
}

impl<R: RoleReq> FromRequest for Authed<R> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Self::check(req))
    }
}

pub fn role_str(r: Role) -> &'static str {
    role_name(r)
}
