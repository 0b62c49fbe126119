//! Request extractors: the authenticated user, role guards, and the error handlers that
//! turn actix's own JSON/path/query rejections into the contract's error shape.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, web};

use campus_impl::AppContext;
use campus_impl::users::CurrentUser;

use crate::error::ApiError;

/// The caller, from `Authorization: Bearer <token>`; 401 otherwise. What the caller may
/// do is the services' decision: they are handed the caller.
pub struct Authed(pub CurrentUser);

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = req.app_data::<web::Data<AppContext>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let ctx =
                ctx.ok_or_else(|| ApiError::internal("application context not registered"))?;
            let token = token.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
            let user = ctx.users.authenticate(&token).await?;
            Ok(Authed(user))
        })
    }
}

/// The client's address: the socket peer, or behind `TRUSTED_PROXIES` the address they
/// forwarded for. What per-address limits count and what WeChat Pay is told.
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequest for ClientIp {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(client_ip(req).map(ClientIp))
    }
}

pub(crate) fn client_ip(req: &HttpRequest) -> Result<std::net::IpAddr, ApiError> {
    let ctx = req
        .app_data::<web::Data<AppContext>>()
        .ok_or_else(|| ApiError::internal("application context not registered"))?;
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    Ok(ctx.trusted_proxies.client_ip(peer, forwarded))
}

/// The `Idempotency-Key` header, when given.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .map_err(|_| ApiError::validation("Idempotency-Key must be ASCII"))?
                .to_string(),
        )),
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| json_error(err).into())
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::validation(format!("invalid field: {e}"))
        }
        other => ApiError::bad_request("invalid_json", format!("malformed JSON: {other}")),
    }
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        ApiError::bad_request("invalid_path", format!("invalid path parameter: {err}")).into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::bad_request("invalid_query", format!("invalid query: {err}")).into()
    })
}

pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(limit)
}
