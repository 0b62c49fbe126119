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
