//! Image uploads: the caller's avatar, and the assigned runner's proof-of-delivery photo.
//! Each takes the raw image (`PUT`, any content type: the bytes decide) or
//! `multipart/form-data` with the image in the field `file` (`POST`, as `wx.uploadFile`
//! sends it). Bodies are read up to the image limit and no further.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, post, put, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::limits::Limit;
use campus_impl::uploads::UploadView;
use campus_impl::uploads::image::MAX_BYTES;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(put_avatar)
        .service(post_avatar)
        .service(put_photo)
        .service(post_photo);
}

fn too_large() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("an image may be at most {MAX_BYTES} bytes"),
    )
}

/// Appends `chunk` to `buf`, refusing to go past the image limit.
fn take(buf: &mut BytesMut, chunk: &[u8]) -> Result<(), ApiError> {
    if buf.len() + chunk.len() > MAX_BYTES {
        return Err(too_large());
    }
    buf.extend_from_slice(chunk);
    Ok(())
}

/// How the image comes: the raw body (`PUT`), or the `file` field of a form (`POST`).
#[derive(Clone, Copy)]
enum Form {
    Raw,
    Multipart,
}

/// The uploaded image's bytes, once the caller is within `upload_user`.
async fn image_body(
    ctx: &AppContext,
    user: &Authed,
    req: &HttpRequest,
    payload: web::Payload,
    form: Form,
) -> Result<Bytes, ApiError> {
    ctx.limits
        .check(Limit::UploadUser, &user.0.id.to_string())
        .await?;
    match form {
        Form::Raw => raw_body(payload).await,
        Form::Multipart => multipart_file(req, payload).await,
    }
}

async fn raw_body(mut payload: web::Payload) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("invalid_body", format!("body: {e}")))?;
        take(&mut buf, &chunk)?;
    }
    Ok(buf.freeze())
}

/// The `file` field of a `multipart/form-data` body; other fields are read (bounded) and
/// dropped, as `wx.uploadFile`'s `formData` may add some.
async fn multipart_file(req: &HttpRequest, payload: web::Payload) -> Result<Bytes, ApiError> {
    let bad = |e: actix_multipart::MultipartError| {
        ApiError::bad_request("invalid_body", format!("multipart body: {e}"))
    };
    let mut form = Multipart::new(req.headers(), payload);
    let mut file = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(bad)?;
        let is_file = field.name() == Some("file");
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.next().await {
            take(&mut buf, &chunk.map_err(bad)?)?;
        }
        if is_file && file.is_none() {
            file = Some(buf.freeze());
        }
    }
    file.ok_or_else(|| ApiError::validation("multipart body: no field named `file`"))
}

#[utoipa::path(tag = "uploads", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "image/jpeg", description = "a JPEG or PNG of at most 2 MB (the bytes decide, not the content type)"),
    responses((status = 200, description = "stored with its metadata stripped; shown to others once WeChat's content check passed it (`check`)", body = UploadView),
              (status = 401, body = ErrorBody),
              (status = 413, description = "`payload_too_large`: over 2 MB", body = ErrorBody),
              (status = 415, description = "`unsupported_media_type`: not a JPEG or PNG by its bytes", body = ErrorBody),
              (status = 422, description = "`invalid_image`: damaged, or a side over 10,000 pixels", body = ErrorBody),
              (status = 429, description = "`rate_limited` (`upload_user`)", body = ErrorBody),
              (status = 503, body = ErrorBody)))]
#[put("/me/avatar")]
async fn put_avatar(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = image_body(&ctx, &user, &req, payload, Form::Raw).await?;
    Ok(HttpResponse::Ok().json(ctx.uploads.avatar(&user.0, body).await?))
}

#[utoipa::path(tag = "uploads", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "multipart/form-data", description = "the image in the field `file`, as `wx.uploadFile` sends it"),
    responses((status = 200, body = UploadView), (status = 400, description = "`invalid_body`: not multipart", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, description = "`invalid_image`; `validation_failed`: no field `file`", body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[post("/me/avatar")]
async fn post_avatar(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = image_body(&ctx, &user, &req, payload, Form::Multipart).await?;
    Ok(HttpResponse::Ok().json(ctx.uploads.avatar(&user.0, body).await?))
}

#[utoipa::path(tag = "uploads", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "image/jpeg", description = "a JPEG or PNG of at most 2 MB"),
    responses((status = 200, description = "the order shows it as `delivery_photo_url` once WeChat's content check passed it", body = UploadView),
              (status = 401, body = ErrorBody),
              (status = 404, description = "no such order assigned to the caller", body = ErrorBody),
              (status = 409, description = "`order_not_in_delivery`: only while accepted or picked up", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[put("/orders/{id}/photo")]
async fn put_photo(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = image_body(&ctx, &user, &req, payload, Form::Raw).await?;
    let order = campus_impl::OrderId(id.into_inner());
    Ok(HttpResponse::Ok().json(ctx.uploads.delivery_photo(&user.0, order, body).await?))
}

#[utoipa::path(tag = "uploads", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "multipart/form-data", description = "the image in the field `file`"),
    responses((status = 200, body = UploadView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
#[post("/orders/{id}/photo")]
async fn post_photo(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = image_body(&ctx, &user, &req, payload, Form::Multipart).await?;
    let order = campus_impl::OrderId(id.into_inner());
    Ok(HttpResponse::Ok().json(ctx.uploads.delivery_photo(&user.0, order, body).await?))
}
