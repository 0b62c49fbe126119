//! The HTTP client every WeChat call goes through: rustls, timeouts, and the
//! optional extra root (`WECHAT_CA_CERT`) for private test servers such as the simulator.

use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid certificate or key in {0}")]
    Pem(String),
    #[error("cannot build HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// The error without its URL's query string: WeChat's URLs carry `secret=` and
/// `access_token=`, and errors end up in logs.
pub fn redact(e: reqwest::Error) -> reqwest::Error {
    let url = e.url().cloned();
    let e = e.without_url();
    match url {
        Some(mut u) => {
            u.set_query(None);
            e.with_url(u)
        }
        None => e,
    }
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, HttpSetupError> {
    std::fs::read(path).map_err(|source| HttpSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A client builder with the project's defaults; callers add an identity for mutual TLS.
pub fn client_builder(
    extra_root: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::ClientBuilder, HttpSetupError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("campus-errand/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = extra_root {
        let pem = read_file(path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|_| HttpSetupError::Pem(path.display().to_string()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_waits_for_its_turn_per_api() {
        let b = Bulkhead::default();
        let mut held = Vec::new();
        for _ in 0..MAX_IN_FLIGHT_PER_API {
            held.push(b.enter("orderquery").await);
        }
        // Full for orderquery, open for another API.
        let waiting = b.enter("orderquery");
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        let _other = b.enter("refund").await;
        held.pop();
        let _turn = waiting.await;
    }

    #[tokio::test]
    async fn redacted_errors_keep_the_path_and_lose_the_query() {
        let client = reqwest::Client::new();
        // Port 1 on loopback: refused at once.
        let e = client
            .get("http://127.0.0.1:1/sns/jscode2session?appid=a&secret=TOPSECRET&js_code=c")
            .send()
            .await
            .expect_err("nothing listens there");
        assert!(
            format!("{e}").contains("TOPSECRET"),
            "reqwest shows the URL: {e}"
        );
        let r = redact(e);
        let shown = format!("{r} {r:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("/sns/jscode2session"), "{shown}");
    }
}

/// Calls in flight to one WeChat API from this instance, at most. A burst of requests
/// then waits its turn here (each call still bounded by `WECHAT_TIMEOUT_SECS`) instead of
/// opening a connection per request and spending a quota in one go.
pub const MAX_IN_FLIGHT_PER_API: usize = 16;

/// One semaphore per WeChat API, made on first use.
#[derive(Clone, Default)]
pub struct Bulkhead {
    apis: std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<&'static str, std::sync::Arc<tokio::sync::Semaphore>>,
        >,
    >,
}

impl Bulkhead {
    /// Waits for a turn at `api`; the turn ends when the permit is dropped.
    pub async fn enter(&self, api: &'static str) -> tokio::sync::OwnedSemaphorePermit {
        let sem = {
            let mut apis = self.apis.lock().unwrap_or_else(|p| p.into_inner());
            apis.entry(api)
                .or_insert_with(|| {
                    std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_PER_API))
                })
                .clone()
        };
        sem.acquire_owned()
            .await
            .expect("the bulkhead never closes its semaphores")
    }
}
