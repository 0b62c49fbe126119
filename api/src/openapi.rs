//! The OpenAPI document: its header and security scheme here; the paths are collected
//! from the handlers as `routes::config` registers them.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Campus Errand API", description = "Backend of the Campus Errand mini-program. Errors: `{\"error\": {\"code\", \"message\"}}`. Money in integer fen."),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The answers every operation can give for reasons of its kind rather than its own, added
/// where the handler does not list them, so the document names every status a client can
/// get: a token (401, 403 `banned`), path and query parsing (400), JSON bodies (400, 413,
/// 415, 422), ids (404), and a database or cache that is down (503).
pub fn add_common_responses(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    for (path, item) in api.paths.paths.iter_mut() {
        let has_id = path.contains('{');
        let is_api = path.starts_with("/api/");
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let authed = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_query = op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == ParameterIn::Query);
            let has_body = op.request_body.is_some();
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description));
            };
            if authed {
                add("401", "`unauthorized`: no token, or a bad or expired one");
                add("403", "`banned`, or `forbidden` for this role");
            }
            if has_id {
                add("400", "`invalid_path`: a path parameter of the wrong type");
                add("404", "`not_found`");
            }
            if has_query {
                add(
                    "400",
                    "`invalid_query`: a query parameter of the wrong type",
                );
                add("422", "`validation_failed`");
            }
            if has_body {
                add("400", "`invalid_json`: malformed JSON");
                add("413", "`payload_too_large`: over MAX_BODY_BYTES");
                add("415", "`unsupported_media_type`: not application/json");
                add(
                    "422",
                    "`validation_failed`: a field of the wrong type or value",
                );
            }
            if is_api {
                add(
                    "503",
                    "`service_unavailable`: the database or the cache is down (Retry-After); \
                     `disk_full`: the database's disk is full, nothing was saved (Retry-After)",
                );
            }
        }
    }
}

fn error_response(
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}
