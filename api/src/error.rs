//! The one error type of the HTTP layer. Every failure leaves as
//! `{"error": {"code": "snake_case", "message": "..."}}` with the contract's status.
//! Service errors are mapped here, once; 5xx causes are logged with their chain.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use campus_impl::auth::AuthError;
use campus_impl::bills::BillError;
use campus_impl::cache::CacheError;
use campus_impl::console::ConsoleError;
use campus_impl::db::DbError;
use campus_impl::expenses::ExpenseError;
use campus_impl::limits::LimitError;
use campus_impl::official_account::OfficialAccountError;
use campus_impl::orders::{InvalidTransition, OrderError, OrderNotFound};
use campus_impl::payments::PaymentError;
use campus_impl::payouts::PayoutError;
use campus_impl::promotions::draws::DrawError;
use campus_impl::promotions::{NotApplicable, PromotionError};
use campus_impl::refunds::RefundError;
use campus_impl::stats::StatsError;
use campus_impl::subscriptions::SubscriptionError;
use campus_impl::subscriptions::mp_outbox::MpOutboxError;
use campus_impl::text::InvalidInput;
use campus_impl::users::{Forbidden, UserError};
use campus_impl::wechat::mini::WechatError;
use campus_impl::wechat::pay::PayError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    retry_after: Option<u64>,
    cause: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            cause: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// A dependency is down: 503, the cause logged but not shown.
    pub fn unavailable(what: &str, cause: impl fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("{what} is unavailable, try again shortly"),
            )
        }
    }

    pub fn internal(cause: impl fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
            )
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(
                code = self.code,
                cause = self.cause.as_deref().unwrap_or(""),
                "request failed"
            );
        }
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.insert_header((header::RETRY_AFTER, v));
        }
        resp.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        })
    }
}

/// Error chain as one line, for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_disk_full() {
            // Not a bug to page someone about at 500: the operator frees space and writes
            // work again; clients retry like any 503.
            return ApiError {
                cause: Some(chain(&e)),
                retry_after: Some(30),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "disk_full",
                    "the server's disk is full: nothing was saved, try again later",
                )
            };
        }
        match e {
            // A group commit that did not happen wrote nothing: the same request again works.
            DbError::Unavailable(_)
            | DbError::Unreachable(_)
            | DbError::Busy
            | DbError::NotCommitted(_) => ApiError::unavailable("the database", chain(&e)),
            _ if e.is_connection_lost() => ApiError::unavailable("the database", chain(&e)),
            // Rolled back whole by the database: a retry is safe and almost always works.
            _ if e.is_deadlock() => ApiError::unavailable("the database", chain(&e)),
            _ => ApiError::internal(chain(&e)),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        ApiError::unavailable("the cache", chain(&e))
    }
}

impl From<campus_impl::wechat::callback_ips::CallbackIpError> for ApiError {
    fn from(e: campus_impl::wechat::callback_ips::CallbackIpError) -> Self {
        use campus_impl::wechat::callback_ips::CallbackIpError as E;
        match e {
            E::Foreign(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden_address", e.to_string())
            }
            E::Unknown(ref w) => ApiError {
                cause: Some(chain(w)),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "WeChat's callback addresses are not known yet",
                )
            },
        }
    }
}

impl From<WechatError> for ApiError {
    fn from(e: WechatError) -> Self {
        wechat_error(&e)
    }
}

fn wechat_error(e: &WechatError) -> ApiError {
    match e {
        WechatError::Cache(c) => ApiError::unavailable("the cache", chain(c)),
        WechatError::RateLimited(_) => ApiError {
            cause: Some(chain(e)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "wechat_rate_limited",
                "WeChat is rate limiting this service, try again shortly",
            )
        }
        .with_retry_after(5),
        WechatError::Busy(_) => ApiError {
            cause: Some(chain(e)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "wechat_busy",
                "WeChat is busy, try again shortly",
            )
        }
        .with_retry_after(1),
        other => ApiError {
            cause: Some(chain(other)),
            ..ApiError::new(
                StatusCode::BAD_GATEWAY,
                "wechat_unavailable",
                "WeChat could not complete the request",
            )
        },
    }
}

impl From<campus_impl::storage::StorageError> for ApiError {
    fn from(e: campus_impl::storage::StorageError) -> Self {
        ApiError::unavailable("object storage", chain(&e))
    }
}

impl From<campus_impl::wechat::wxacode::WxaCodeError> for ApiError {
    fn from(e: campus_impl::wechat::wxacode::WxaCodeError) -> Self {
        wxacode_error(&e)
    }
}

impl From<campus_impl::qrcodes::MiniCodeError> for ApiError {
    fn from(e: campus_impl::qrcodes::MiniCodeError) -> Self {
        use campus_impl::qrcodes::MiniCodeError as E;
        match e {
            E::Code(c) => wxacode_error(&c),
            E::Storage(st) => ApiError::unavailable("object storage", chain(&*st)),
            E::Internal(m) => ApiError::internal(m),
            E::Limited(l) => limit_error(&l),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        limit_error(&e)
    }
}

fn limit_error(e: &LimitError) -> ApiError {
    match e {
        LimitError::Limited { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
                .with_retry_after(e.retry_after_secs())
        }
        LimitError::Unavailable(c) => ApiError::unavailable("the cache", chain(c)),
    }
}

/// By reference: one single-flight's error is shared by every request that waited on it.
fn wxacode_error(e: &campus_impl::wechat::wxacode::WxaCodeError) -> ApiError {
    use campus_impl::wechat::wxacode::WxaCodeError as E;
    match e {
        E::Invalid(m) => ApiError::validation(m.clone()),
        E::SceneRejected => ApiError::validation(e.to_string()),
        E::PageNotPublished => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "page_not_published",
            e.to_string(),
        ),
        E::RateLimited(code) => wechat_error(&WechatError::RateLimited(*code)),
        E::Wechat(w) => wechat_error(w),
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::validation(e.0)
    }
}

impl From<Forbidden> for ApiError {
    fn from(e: Forbidden) -> Self {
        ApiError::forbidden(e.to_string())
    }
}

impl From<OrderNotFound> for ApiError {
    fn from(e: OrderNotFound) -> Self {
        ApiError::not_found(e.to_string())
    }
}

impl From<InvalidTransition> for ApiError {
    fn from(e: InvalidTransition) -> Self {
        ApiError::conflict("invalid_transition", e.to_string())
    }
}

impl From<PayError> for ApiError {
    fn from(e: PayError) -> Self {
        Self {
            cause: Some(chain(&e)),
            ..ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_unavailable",
                "WeChat Pay could not complete the request",
            )
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::ContentRejected(c) => c.into(),
            UserError::InvalidCode => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_code",
                "the login code is invalid or was already used",
            ),
            UserError::LoginBlocked => {
                ApiError::new(StatusCode::FORBIDDEN, "login_blocked", e.to_string())
            }
            UserError::Wechat(w) => w.into(),
            UserError::Auth(a) => a.into(),
            UserError::Invalid(m) => m.into(),
            UserError::Forbidden(f) => f.into(),
            UserError::Banned => banned(),
            UserError::InvalidPhoneCode => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_phone_code",
                e.to_string(),
            ),
            UserError::PhoneRefused(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "phone_refused",
                e.to_string(),
            ),
            UserError::NotFound => ApiError::not_found("user not found"),
            UserError::Conflict(m) => ApiError::conflict("conflict", m),
            UserError::Db(d) => d.into(),
            UserError::Crypto(c) => ApiError::internal(chain(&c)),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        use OrderError as E;
        match e {
            E::NotFound(n) => n.into(),
            E::ContentRejected(c) => c.into(),
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::InvalidTransition(t) => t.into(),
            E::AlreadyTaken => ApiError::conflict("already_taken", e.to_string()),
            E::WrongPickupCode => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong_pickup_code",
                e.to_string(),
            ),
            E::TooManyAttempts => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                e.to_string(),
            )
            .with_retry_after(600),
            E::IdempotencyConflict => ApiError::conflict("idempotency_conflict", e.to_string()),
            E::TooManyUnpaid(_) => ApiError::conflict("too_many_unpaid_orders", e.to_string()),
            E::CouponNotApplicable(n) => n.into(),
            E::Payment(p) => p.into(),
            E::Refund(r) => r.into(),
            E::Render(r) => ApiError::internal(chain(&r)),
            E::Db(d) => d.into(),
            E::Cache(c) => c.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        use PaymentError as E;
        match e {
            E::NotFound(n) => n.into(),
            E::InvalidTransition(t) => t.into(),
            E::PaymentExpired => ApiError::conflict("payment_expired", e.to_string()),
            E::Pay(p) => p.into(),
            E::Db(d) => d.into(),
        }
    }
}

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        use RefundError as E;
        match e {
            E::NotFound(n) => n.into(),
            E::UnknownRefund => ApiError::not_found(e.to_string()),
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::InvalidTransition(t) => t.into(),
            E::RefundExceedsPaid => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refund_exceeds_paid",
                e.to_string(),
            ),
            E::Pay(p) => p.into(),
            E::Db(d) => d.into(),
        }
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Invalid(m) => m.into(),
            SubscriptionError::Forbidden(f) => f.into(),
            SubscriptionError::FormIdRetired => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_id_retired",
                e.to_string(),
            ),
            SubscriptionError::Db(d) => d.into(),
        }
    }
}

/// The contract's answer to a banned user, on every call that needs a token.
fn banned() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "banned", "this account is banned")
}

impl From<StatsError> for ApiError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::Invalid(m) => m.into(),
            StatsError::Forbidden(f) => f.into(),
            StatsError::Db(d) => d.into(),
        }
    }
}

impl From<ConsoleError> for ApiError {
    fn from(e: ConsoleError) -> Self {
        use ConsoleError as E;
        match e {
            E::NotFound => ApiError::not_found(e.to_string()),
            E::AlreadyApproved => ApiError::conflict("already_approved", e.to_string()),
            E::RateLimited => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
                    .with_retry_after(300)
            }
            E::Forbidden(f) => f.into(),
            E::Cache(c) => c.into(),
            E::Code(c) => c.into(),
        }
    }
}

impl From<OfficialAccountError> for ApiError {
    fn from(e: OfficialAccountError) -> Self {
        use OfficialAccountError as E;
        match e {
            E::NotConfigured => ApiError::not_found("the official account is not configured"),
            E::Push(p) => push_error(p, "the official account is not configured"),
            E::Malformed(m) => ApiError::bad_request("invalid_message", m),
            E::Db(d) => d.into(),
            E::Cache(c) => c.into(),
            E::Promotion(p) => p.into(),
            E::Expense(x) => x.into(),
        }
    }
}

/// A push to a message URL that failed verification: the same answers on every such URL.
fn push_error(p: campus_impl::wechat::push::PushError, not_configured: &str) -> ApiError {
    use campus_impl::wechat::push::PushError as P;
    match p {
        P::NoKey => ApiError::not_found(not_configured),
        P::BadSignature => ApiError::forbidden("bad signature"),
        P::StaleTimestamp => ApiError::forbidden("push timestamp is not fresh"),
        P::ReplayedNonce => ApiError::forbidden("timestamp and nonce already used"),
        P::ModeRefused => ApiError::forbidden("push mode not accepted"),
        P::Malformed(m) => ApiError::bad_request("invalid_message", m),
        P::Cache(c) => c.into(),
    }
}

impl From<campus_impl::content_check::ContentRejected> for ApiError {
    fn from(e: campus_impl::content_check::ContentRejected) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "content_rejected",
            e.to_string(),
        )
    }
}

impl From<campus_impl::content_check::ContentCheckError> for ApiError {
    fn from(e: campus_impl::content_check::ContentCheckError) -> Self {
        use campus_impl::content_check::ContentCheckError as E;
        match e {
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::Db(d) => d.into(),
        }
    }
}

impl From<campus_impl::uploads::UploadError> for ApiError {
    fn from(e: campus_impl::uploads::UploadError) -> Self {
        use campus_impl::uploads::UploadError as E;
        use campus_impl::uploads::image::ImageError as I;
        match e {
            E::Image(I::TooLarge) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            E::Image(I::NotAnImage) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                e.to_string(),
            ),
            E::Image(I::Damaged(_) | I::BadSize) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_image",
                e.to_string(),
            ),
            E::OrderNotFound => ApiError::not_found(e.to_string()),
            E::WrongStatus(_) => ApiError::conflict("order_not_in_delivery", e.to_string()),
            E::Storage(s) => s.into(),
            E::Db(d) => d.into(),
        }
    }
}

impl From<campus_impl::mini_push::MiniPushError> for ApiError {
    fn from(e: campus_impl::mini_push::MiniPushError) -> Self {
        use campus_impl::mini_push::MiniPushError as E;
        const NOT_CONFIGURED: &str = "the mini-program's message push is not configured";
        match e {
            E::NotConfigured => ApiError::not_found(NOT_CONFIGURED),
            E::Push(p) => push_error(p, NOT_CONFIGURED),
            E::Malformed(m) => ApiError::bad_request("invalid_message", m),
            E::Upload(u) => u.into(),
            E::Db(d) => d.into(),
        }
    }
}

impl From<ExpenseError> for ApiError {
    fn from(e: ExpenseError) -> Self {
        use ExpenseError as E;
        match e {
            E::NotFound => ApiError::not_found(e.to_string()),
            E::ContentRejected(c) => c.into(),
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::NotMember => ApiError::new(StatusCode::FORBIDDEN, "not_group_member", e.to_string()),
            E::NotLeader => ApiError::new(StatusCode::FORBIDDEN, "not_group_leader", e.to_string()),
            E::VoidWindowPassed => {
                ApiError::new(StatusCode::FORBIDDEN, "void_window_passed", e.to_string())
            }
            E::GroupNameTaken => ApiError::conflict("group_name_taken", e.to_string()),
            E::AlreadyInGroup => ApiError::conflict("already_in_group", e.to_string()),
            E::AlreadyVoided => ApiError::conflict("already_voided", e.to_string()),
            E::AlreadyReimbursed => ApiError::conflict("already_reimbursed", e.to_string()),
            E::NothingToReimburse => ApiError::conflict("nothing_to_reimburse", e.to_string()),
            E::IdempotencyConflict => ApiError::conflict("idempotency_conflict", e.to_string()),
            E::Db(d) => d.into(),
        }
    }
}

impl From<MpOutboxError> for ApiError {
    fn from(e: MpOutboxError) -> Self {
        match e {
            MpOutboxError::Invalid(m) => m.into(),
            MpOutboxError::Forbidden(f) => f.into(),
            MpOutboxError::Db(d) => d.into(),
        }
    }
}

impl From<PayoutError> for ApiError {
    fn from(e: PayoutError) -> Self {
        use PayoutError as E;
        match e {
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::NotFound => ApiError::not_found(e.to_string()),
            E::InsufficientBalance { .. } => {
                ApiError::conflict("insufficient_balance", e.to_string())
            }
            E::DailyLimit(_) => ApiError::conflict("withdraw_limit_reached", e.to_string()),
            E::NotPending(_) => ApiError::conflict("withdrawal_not_pending", e.to_string()),
            E::IdempotencyConflict => ApiError::conflict("idempotency_conflict", e.to_string()),
            E::Db(d) => d.into(),
        }
    }
}

impl From<NotApplicable> for ApiError {
    fn from(e: NotApplicable) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "coupon_not_applicable",
            e.to_string(),
        )
    }
}

impl From<PromotionError> for ApiError {
    fn from(e: PromotionError) -> Self {
        use PromotionError as E;
        match e {
            E::NotFound => ApiError::not_found(e.to_string()),
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::OutOfStock => ApiError::conflict("out_of_stock", e.to_string()),
            E::AlreadyClaimed => ApiError::conflict("already_claimed", e.to_string()),
            E::IdempotencyConflict => ApiError::conflict("idempotency_conflict", e.to_string()),
            E::Db(d) => d.into(),
        }
    }
}

impl From<DrawError> for ApiError {
    fn from(e: DrawError) -> Self {
        use DrawError as E;
        match e {
            E::NotFound => ApiError::not_found(e.to_string()),
            E::ContentRejected(c) => c.into(),
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::Locked => ApiError::conflict("draw_locked", e.to_string()),
            E::Cancelled => ApiError::conflict("draw_cancelled", e.to_string()),
            E::IdempotencyConflict => ApiError::conflict("idempotency_conflict", e.to_string()),
            E::Corrupt(_) => ApiError::internal(chain(&e)),
            E::Db(d) => d.into(),
        }
    }
}

impl From<BillError> for ApiError {
    fn from(e: BillError) -> Self {
        use BillError as E;
        match e {
            E::Invalid(m) => m.into(),
            E::Forbidden(f) => f.into(),
            E::NotFound => ApiError::not_found(e.to_string()),
            E::Pay(p) => p.into(),
            E::Unreadable(_) => ApiError {
                cause: Some(chain(&e)),
                ..ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "bill_unreadable",
                    "WeChat's bill could not be read",
                )
            },
            E::Stored(_) => ApiError::internal(chain(&e)),
            E::Cache(c) => c.into(),
            E::Db(d) => d.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(e: ApiError) -> (u16, serde_json::Value) {
        let r = e.error_response();
        let status = r.status().as_u16();
        let bytes = r.into_body().try_into_bytes().expect("bytes");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    /// The codes clients switch on: pinned so a refactor cannot rename them.
    #[test]
    fn contract_codes_are_pinned() {
        let (s, b) = body_of(UserError::InvalidCode.into());
        assert_eq!(s, 401);
        assert_eq!(b["error"]["code"], "invalid_code");
        let (s, b) = body_of(AuthError::Invalid.into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
        let (s, b) = body_of(UserError::Invalid(InvalidInput::new("x")).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("validation_failed"))
        );
        let (s, b) = body_of(UserError::Banned.into());
        assert_eq!((s, b["error"]["code"].as_str()), (403, Some("banned")));
        let (s, b) = body_of(
            UserError::ContentRejected(campus_impl::content_check::ContentRejected {
                field: "nickname",
            })
            .into(),
        );
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("content_rejected"))
        );
        let (s, b) = body_of(UserError::InvalidPhoneCode.into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("invalid_phone_code"))
        );
        use campus_impl::uploads::{UploadError, image::ImageError};
        for (e, want) in [
            (ImageError::TooLarge, (413, "payload_too_large")),
            (ImageError::NotAnImage, (415, "unsupported_media_type")),
            (ImageError::BadSize, (422, "invalid_image")),
        ] {
            let (s, b) = body_of(UploadError::Image(e).into());
            assert_eq!((s, b["error"]["code"].as_str()), (want.0, Some(want.1)));
        }
        let (s, b) = body_of(UploadError::WrongStatus(campus_dal::OrderStatus::Delivered).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (409, Some("order_not_in_delivery"))
        );
        let (s, b) = body_of(UserError::PhoneRefused(1_400_001).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("phone_refused"))
        );
        let (s, b) = body_of(CacheError::Unavailable("down".into()).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (503, Some("service_unavailable"))
        );
        assert!(
            !b.to_string().contains("down"),
            "causes are logged, not returned"
        );
        // Every move the transition table refuses is a 409.
        for from in campus_dal::OrderStatus::ALL {
            for mv in campus_dal::OrderMove::ALL {
                if from.after(*mv).is_some() {
                    continue;
                }
                let e = InvalidTransition {
                    from: *from,
                    action: mv.verb(),
                };
                let (s, b) = body_of(OrderError::from(e).into());
                assert_eq!(
                    (s, b["error"]["code"].as_str()),
                    (409, Some("invalid_transition"))
                );
            }
        }
        let (s, b) = body_of(OrderError::Forbidden(Forbidden(campus_dal::Role::Admin)).into());
        assert_eq!((s, b["error"]["code"].as_str()), (403, Some("forbidden")));
        let r = ApiError::from(LimitError::Limited {
            limit: campus_impl::limits::Limit::OrderUser,
            retry_after: std::time::Duration::from_millis(1500),
        })
        .error_response();
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"2"[..]),
            "rounded up"
        );
        let (s, b) = body_of(ApiError::from(LimitError::Limited {
            limit: campus_impl::limits::Limit::LoginIp,
            retry_after: std::time::Duration::from_secs(3),
        }));
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (429, Some("rate_limited"))
        );
        let (s, b) = body_of(PromotionError::OutOfStock.into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (409, Some("out_of_stock"))
        );
        let (s, b) = body_of(PromotionError::AlreadyClaimed.into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (409, Some("already_claimed"))
        );
        let (s, b) = body_of(DrawError::Locked.into());
        assert_eq!((s, b["error"]["code"].as_str()), (409, Some("draw_locked")));
        let (s, b) = body_of(DrawError::Cancelled.into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (409, Some("draw_cancelled"))
        );
        let (s, b) = body_of(PromotionError::NotFound.into());
        assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
        let (s, b) = body_of(OrderError::CouponNotApplicable(NotApplicable("expired")).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("coupon_not_applicable"))
        );
        for (e, status, code) in [
            (ExpenseError::NotMember, 403, "not_group_member"),
            (ExpenseError::NotLeader, 403, "not_group_leader"),
            (ExpenseError::VoidWindowPassed, 403, "void_window_passed"),
            (ExpenseError::GroupNameTaken, 409, "group_name_taken"),
            (ExpenseError::AlreadyInGroup, 409, "already_in_group"),
            (ExpenseError::AlreadyVoided, 409, "already_voided"),
            (ExpenseError::AlreadyReimbursed, 409, "already_reimbursed"),
            (
                ExpenseError::NothingToReimburse,
                409,
                "nothing_to_reimburse",
            ),
            (
                ExpenseError::IdempotencyConflict,
                409,
                "idempotency_conflict",
            ),
            (ExpenseError::NotFound, 404, "not_found"),
            (
                ExpenseError::Invalid(InvalidInput::new("amount")),
                422,
                "validation_failed",
            ),
        ] {
            let (s, b) = body_of(e.into());
            assert_eq!((s, b["error"]["code"].as_str()), (status, Some(code)));
        }
        let (s, b) = body_of(DbError::NotCommitted("database or disk is full".into()).into());
        assert_eq!((s, b["error"]["code"].as_str()), (503, Some("disk_full")));
        let full = campus_dal::DieselError::DatabaseError(
            campus_dal::DatabaseErrorKind::Unknown,
            Box::new("database or disk is full".to_string()),
        );
        let (s, b) = body_of(DbError::Query(full).into());
        assert_eq!((s, b["error"]["code"].as_str()), (503, Some("disk_full")));
        let gone = campus_dal::DieselError::DatabaseError(
            campus_dal::DatabaseErrorKind::Unknown,
            Box::new("Server has gone away".to_string()),
        );
        let (s, b) = body_of(DbError::Query(gone).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (503, Some("service_unavailable"))
        );
        let deadlock = campus_dal::DieselError::DatabaseError(
            campus_dal::DatabaseErrorKind::SerializationFailure,
            Box::new("Deadlock found when trying to get lock".to_string()),
        );
        let (s, b) = body_of(DbError::Query(deadlock).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (503, Some("service_unavailable"))
        );
        let (s, b) = body_of(DbError::NotCommitted("rolled back".into()).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (503, Some("service_unavailable"))
        );
        let (s, b) = body_of(OrderError::TooManyUnpaid(5).into());
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (409, Some("too_many_unpaid_orders"))
        );
    }
}
