//! The JSON error envelope `{"error": {"code", "message", "field"?}}` and its mapping from
//! extractor and actor failures.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// An HTTP error with our envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message).with_field(field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable(component: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{component} not available"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Maps a failed actor request: mailbox closed or timed out → 503; a crash or escalation → 503.
    pub fn from_mailbox(component: &str, err: &actix::MailboxError) -> Self {
        tracing::warn!(component, error = %err, "actor request failed");
        Self::unavailable(component)
    }

    /// Maps a failed request that may have sent an order: no answer in time means the order's
    /// outcome is unknown (502, reconciled by client id), not that nothing happened.
    pub fn from_order_request(component: &str, err: &actix::MailboxError) -> Self {
        match err {
            actix::MailboxError::Timeout => {
                tracing::error!(component, "order request unanswered in time; outcome unknown");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "outcome_unknown",
                    format!(
                        "no answer from the {component} in time: the order's outcome is unknown and is \
                         reconciled by client id; check GET /api/v1/orders before retrying"
                    ),
                )
            }
            other => Self::from_mailbox(component, other),
        }
    }

    pub fn from_actor(component: &str, err: &triplegain_actors::supervision::ActorError) -> Self {
        tracing::warn!(component, error = %err, "actor refused or crashed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{component} not available: {err}"),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.body.code, self.body.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(ErrorEnvelope {
            error: self.body.clone(),
        })
    }
}

/// Pulls a field name out of a serde error message (`missing field `x``, `unknown field `x``).
fn field_from_serde(msg: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(start) = msg.find(marker) {
            let rest = &msg[start + marker.len()..];
            return rest.find('`').map(|end| rest[..end].to_owned());
        }
    }
    None
}

/// The JSON body error handler for `web::Json`: 413 over the limit, 415 for a wrong content type,
/// 400 naming the field where serde says which one.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", err.to_string())
        }
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ),
        E::Deserialize(de) => {
            let msg = de.to_string();
            let mut e = ApiError::bad_request(msg.clone());
            if let Some(f) = field_from_serde(&msg) {
                e = e.with_field(f);
            }
            e
        }
        other => ApiError::bad_request(format!("could not read the JSON body: {other}")),
    };
    api.into()
}

/// A JSON body whose errors name the field by its path (`orders[0].price`): malformed JSON or a
/// wrong type is 400 with `field`, a body over the limit is 413, a wrong content type 415.
///
/// The body is read the same way whatever its framing (`Content-Length` or chunked), must be
/// exactly one JSON object (no trailing data, no array mapped onto a struct) and must be sent as
/// `application/json` exactly (a `charset` parameter is allowed).
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body (whatever its framing) is `None`.
pub struct OptionalJsonBody<T>(pub Option<T>);

/// `application/json`, optionally with parameters (`; charset=utf-8`), and nothing else.
fn is_json_content_type(req: &actix_web::HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn unsupported_media_type() -> actix_web::Error {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Content-Type must be application/json",
    )
    .into()
}

/// Parses exactly one JSON object into `T`, naming the field of the first error.
fn parse_json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be one JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let msg = inner.to_string();
            let field = if path == "." {
                field_from_serde(&msg)
            } else {
                Some(path)
            };
            let mut e = ApiError::bad_request(msg);
            if let Some(f) = field {
                e = e.with_field(f);
            }
            return Err(e);
        }
    };
    de.end()
        .map_err(|e| ApiError::bad_request(format!("trailing data after the JSON object: {e}")))?;
    Ok(value)
}

/// Reads the whole body (any framing); `None` when it is empty or only whitespace.
fn read_body<T: serde::de::DeserializeOwned + 'static>(
    req: &actix_web::HttpRequest,
    payload: &mut actix_web::dev::Payload,
) -> futures::future::LocalBoxFuture<'static, Result<Option<T>, actix_web::Error>> {
    let content_type_ok = is_json_content_type(req);
    let bytes = <actix_web::web::Bytes as actix_web::FromRequest>::from_request(req, payload);
    Box::pin(async move {
        let bytes = bytes.await.map_err(|e| {
            actix_web::Error::from(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if !content_type_ok {
            return Err(unsupported_media_type());
        }
        parse_json_object::<T>(&bytes).map(Some).map_err(Into::into)
    })
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for OptionalJsonBody<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let body = read_body::<T>(req, payload);
        Box::pin(async move { body.await.map(OptionalJsonBody) })
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let content_type_ok = is_json_content_type(req);
        let body = read_body::<T>(req, payload);
        Box::pin(async move {
            if !content_type_ok {
                return Err(unsupported_media_type());
            }
            match body.await? {
                Some(v) => Ok(JsonBody(v)),
                None => Err(ApiError::bad_request("a JSON object body is required").into()),
            }
        })
    }
}

/// Money fields of request bodies: a decimal string (or a JSON integer), parsed exactly. A
/// value that would be rounded (more than 28 decimals) or a JSON fraction (a binary float,
/// already rounded by the time it is read) is refused, so nothing is silently changed.
pub mod strict_decimal {
    use rust_decimal::Decimal;
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;

    /// How the OpenAPI document describes a money field of a request body: a decimal string or
    /// a JSON integer, exactly what [`option`] accepts.
    pub struct DecimalInput;

    impl utoipa::PartialSchema for DecimalInput {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
            OneOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(utoipa::openapi::SchemaFormat::Custom("decimal".into()))),
                )
                .item(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some(
                    "A decimal string such as \"0.5\" (exact, at most 28 decimals, no exponent) or a JSON integer",
                ))
                .into()
        }
    }

    impl utoipa::ToSchema for DecimalInput {}

    struct V;

    impl Visitor<'_> for V {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal string such as \"0.5\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            let t = v.trim();
            if t.is_empty() || t.contains(['e', 'E']) {
                return Err(E::custom(format!("{v:?} is not a plain decimal number")));
            }
            Decimal::from_str_exact(t).map_err(|e| E::custom(format!("{v:?} is not an exact decimal: {e}")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!(
                "{v} is a JSON fraction; send money and prices as decimal strings (\"{v}\")"
            )))
        }
    }

    /// For `Option<Decimal>` fields (`#[serde(default, deserialize_with = "…::option")]`).
    ///
    /// # Errors
    /// A value that is not an exact decimal.
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        struct O;
        impl<'de> Visitor<'de> for O {
            type Value = Option<Decimal>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(V).map(Some)
            }
        }
        d.deserialize_option(O)
    }
}

/// Path and query extraction errors: 400 with our envelope.
pub fn path_error(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request(err.to_string()).into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    let msg = err.to_string();
    let mut e = ApiError::bad_request(msg.clone());
    if let Some(f) = field_from_serde(&msg) {
        e = e.with_field(f);
    }
    e.into()
}

/// Unknown routes: 405 with `Allow` when the path is a route's under another method, else 404.
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    let allowed = super::methods_of(req.path());
    if allowed.is_empty() {
        return ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response();
    }
    let allow = allowed
        .iter()
        .map(actix_web::http::Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}; allowed: {allow}", req.method(), req.path()),
    )
    .error_response();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    res
}
