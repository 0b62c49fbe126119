//! Faults on WeChat's side of every API call the server makes (everything but `/sim/...`):
//! a slow WeChat, one answering 5xx, one whose connection resets. Set with
//! [`super::SimHandle::set_api_faults`] or `POST /sim/api-faults`; read at each request.
//!
//! What each fault means for the request, chosen so the server meets the hard cases:
//! * `error_percent`: HTTP 503 with an empty body, the request NOT carried out (a gateway in
//!   front of WeChat refusing it).
//! * `reset_percent`: the request IS carried out (a payment, a refund takes effect), then
//!   the connection is reset (RST) instead of answering: an unclear answer.
//! * `delay_percent`: the request is carried out and answered `delay` later, so a client
//!   that gives up first has an unclear answer too.
//!
//! The rest is answered at once. The shares add up to at most 100.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, Service, ServiceRequest, ServiceResponse};
use actix_web::{HttpResponse, web};
use futures::future::LocalBoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::state::Shared;

/// The faults applied to API calls; all off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiFaults {
    /// How late the delayed answers are sent.
    #[serde(with = "millis", rename = "delay_ms")]
    pub delay: Duration,
    /// Share of requests (0-100) carried out and answered `delay` later.
    pub delay_percent: u8,
    /// Share of requests (0-100) answered 503 without being carried out.
    pub error_percent: u8,
    /// Share of requests (0-100) carried out, then their connection reset.
    pub reset_percent: u8,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // Capped: a typo must not park the simulator's workers for hours.
        Ok(Duration::from_millis(u64::deserialize(d)?.min(120_000)))
    }
}

impl ApiFaults {
    pub fn is_off(&self) -> bool {
        self.error_percent == 0 && self.reset_percent == 0 && self.delay_percent == 0
    }

    /// Whether the shares add up to at most 100.
    pub fn is_valid(&self) -> bool {
        u16::from(self.error_percent)
            + u16::from(self.reset_percent)
            + u16::from(self.delay_percent)
            <= 100
    }
}

/// A duplicate of each connection's socket, kept with the connection, so a reset can set
/// `SO_LINGER` 0 on it (the close then sends RST instead of FIN).
pub struct ConnSocket(pub Option<OwnedFd>);

/// Called from the TLS `on_connect` hook with the connection's TCP stream.
pub fn record_socket(tcp: &impl AsFd, ext: &mut Extensions) {
    ext.insert(ConnSocket(tcp.as_fd().try_clone_to_owned().ok()));
}

enum Plan {
    Pass,
    Error,
    Reset,
    Delay(Duration),
}

fn plan(req: &ServiceRequest) -> Plan {
    if req.path().starts_with("/sim/") {
        return Plan::Pass;
    }
    let Some(sh) = req.app_data::<web::Data<Shared>>() else {
        return Plan::Pass;
    };
    let mut st = sh.lock();
    let f = st.api_faults.clone();
    if f.is_off() {
        return Plan::Pass;
    }
    let roll: u16 = rand::rng().random_range(0..100);
    let error = u16::from(f.error_percent);
    let reset = error + u16::from(f.reset_percent);
    let delay = reset + u16::from(f.delay_percent);
    if roll < error {
        st.count("api_fault_error");
        Plan::Error
    } else if roll < reset {
        st.count("api_fault_reset");
        Plan::Reset
    } else if roll < delay {
        st.count("api_fault_delayed");
        Plan::Delay(f.delay)
    } else {
        Plan::Pass
    }
}

/// The middleware (`App::wrap_fn`).
pub fn apply<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    match plan(&req) {
        Plan::Error => {
            Box::pin(
                async move { Ok(req.into_response(HttpResponse::ServiceUnavailable().finish())) },
            )
        }
        Plan::Pass => {
            let fut = srv.call(req);
            Box::pin(async move { fut.await.map(ServiceResponse::map_into_boxed_body) })
        }
        Plan::Delay(d) => {
            let fut = srv.call(req);
            Box::pin(async move {
                let res = fut.await?;
                actix_web::rt::time::sleep(d).await;
                Ok(res.map_into_boxed_body())
            })
        }
        Plan::Reset => {
            let fut = srv.call(req);
            Box::pin(async move {
                let res = fut.await?;
                if let Some(ConnSocket(Some(fd))) = res.request().conn_data::<ConnSocket>() {
                    let _ = socket2::SockRef::from(fd).set_linger(Some(Duration::ZERO));
                }
                // A body that fails makes actix drop the connection without answering; with
                // the linger set above, the close is a reset.
                let (req, _) = res.into_parts();
                let body = futures::stream::once(async {
                    Err::<web::Bytes, _>(std::io::Error::other("simulated connection reset"))
                });
                Ok(ServiceResponse::new(
                    req,
                    HttpResponse::Ok().streaming(body),
                ))
            })
        }
    }
}
