//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Campus Errand API", description = "Backend of the Campus Errand mini-program. Errors: `{\"error\": {\"code\", \"message\"}}`. Money in integer fen."),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::auth::login,
        routes::me::get_me,
        routes::me::patch_me,
        routes::me::bind_code,
        routes::runners::apply,
        routes::runners::approve,
        routes::orders::create,
        routes::orders::list,
        routes::orders::available,
        routes::orders::get_one,
        routes::orders::pay,
        routes::orders::cancel,
        routes::orders::confirm,
        routes::orders::accept,
        routes::orders::pickup,
        routes::orders::deliver,
        routes::orders::qrcode,
        routes::orders::admin_refund,
        routes::pay::pay_notify,
        routes::pay::refund_notify,
        routes::qrcode::mini_program_code,
        routes::qrcode::image,
        routes::notify::credits,
        routes::mp::verify,
        routes::mp::message,
    ),
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
