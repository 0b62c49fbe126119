//! Object storage behind one interface over the `object_store` crate: the local
//! filesystem (`file://`, served by this server at `/images/<key>`) or any S3-compatible
//! service (`s3://`: AWS, Tencent COS, Qiniu Kodo, Aliyun OSS, MinIO).
//!
//! Objects are immutable and content-addressed, so a put simply overwrites. Neither
//! backend ever exposes a half-written object: `LocalFileSystem` writes a staging file
//! (`<key>#<n>`) and renames it into place, and an S3 PUT becomes visible only once complete.

mod url;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, PutOptions, PutPayload,
    RetryConfig,
};
use secrecy::ExposeSecret;

use crate::settings::Settings;
use crate::telemetry::Metrics;

pub use url::StorageUrl;

/// Objects never change under a key, so clients and CDNs may keep them for a year.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Attempts of one upload (the first one included) before the error is returned.
const PUT_ATTEMPTS: u32 = 4;
const PUT_FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid STORAGE_URL: {0}")]
    Config(String),
    #[error("object storage {op} of {key} failed: {source}")]
    Unavailable {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
}

/// One stored object, as listed.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// URLs handed out are `{public_base}/{key}`.
    public_base: String,
    /// `file://`: this server serves the objects itself.
    local: bool,
    /// Where the objects live (directory, or endpoint and bucket), whatever URL serves them.
    identity: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("store", &self.store.to_string())
            .field("public_base", &self.public_base)
            .finish()
    }
}

impl Storage {
    /// Builds the store named by `STORAGE_URL`. Nothing is contacted yet: an unreachable
    /// S3 endpoint shows up as 503s on use, not as a server that refuses to start.
    pub fn build(settings: &Settings, metrics: Metrics) -> Result<Self, StorageError> {
        match StorageUrl::parse(&settings.storage_url)? {
            StorageUrl::Local(dir) => Self::local(dir, &settings.public_base_url, metrics),
            StorageUrl::S3 {
                bucket,
                endpoint,
                region,
                public_base,
            } => {
                let (Some(key_id), Some(secret)) = (
                    settings.aws_access_key_id.as_deref(),
                    settings.aws_secret_access_key.as_ref(),
                ) else {
                    return Err(StorageError::Config(
                        "s3:// storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                    ));
                };
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_region(&region)
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret.expose_secret())
                    // The defaults retry for up to 3 minutes, far past any request's patience;
                    // uploads get their own retries in `put` on top of these.
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig {
                            init_backoff: Duration::from_millis(50),
                            max_backoff: Duration::from_millis(500),
                            base: 2.0,
                        },
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(5),
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(Duration::from_secs(10))
                            .with_connect_timeout(Duration::from_secs(3)),
                    );
                if let Some(ep) = &endpoint {
                    // S3-compatible services are addressed path-style at their endpoint;
                    // plain http is only ever chosen explicitly in STORAGE_URL.
                    b = b
                        .with_endpoint(ep)
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(ep.starts_with("http://"));
                }
                let store = b.build().map_err(|e| StorageError::Config(e.to_string()))?;
                let public_base = public_base.unwrap_or_else(|| match &endpoint {
                    Some(ep) => format!("{}/{bucket}", ep.trim_end_matches('/')),
                    None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
                });
                Ok(Self {
                    store: Arc::new(store),
                    public_base: public_base.trim_end_matches('/').to_string(),
                    local: false,
                    identity: format!("s3://{bucket}@{}", endpoint.as_deref().unwrap_or(&region)),
                    metrics,
                })
            }
        }
    }

    fn local(dir: PathBuf, server_base: &str, metrics: Metrics) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| StorageError::Config(format!("cannot create {}: {e}", dir.display())))?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| StorageError::Config(format!("{}: {e}", dir.display())))?;
        let identity = format!(
            "file://{}",
            std::path::absolute(&dir).unwrap_or(dir).display()
        );
        Ok(Self {
            store: Arc::new(fs),
            public_base: format!("{}/images", server_base.trim_end_matches('/')),
            local: true,
            identity,
            metrics,
        })
    }

    /// Whether objects are served by this server (`GET /images/<key>`).
    pub fn served_locally(&self) -> bool {
        self.local
    }

    /// A stable name for where objects go, so local state derived from one store is
    /// not mistaken for the contents of another after `STORAGE_URL` changes.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn public_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    /// Whether `key` exists. Only a definite "not found" is `Ok(false)`.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        let r = match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StorageError::Unavailable {
                op: "head",
                key: key.to_string(),
                source,
            }),
        };
        self.observe("head", &r);
        r
    }

    /// The object's bytes, or `None` when there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let fail = |source| StorageError::Unavailable {
            op: "get",
            key: key.to_string(),
            source,
        };
        let r = match self.store.get(&ObjectPath::from(key)).await {
            Ok(got) => got.bytes().await.map(Some).map_err(fail),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(fail(e)),
        };
        self.observe("get", &r);
        r
    }

    /// Uploads `bytes` under `key`, retrying with exponential backoff. Every failed
    /// attempt is logged; the last error is returned, never swallowed.
    pub async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &'static str,
    ) -> Result<(), StorageError> {
        let path = ObjectPath::from(key);
        let r = retry_with_backoff("put", key, PUT_ATTEMPTS, PUT_FIRST_BACKOFF, || {
            let mut attributes = Attributes::new();
            // The local filesystem cannot store attributes (it refuses any); its objects
            // get their headers from the `/images` handler instead.
            if !self.local {
                attributes.insert(Attribute::ContentType, content_type.into());
                attributes.insert(Attribute::CacheControl, IMMUTABLE_CACHE_CONTROL.into());
            }
            let opts = PutOptions {
                attributes,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts)
        })
        .await
        .map(|_| ())
        .map_err(|source| StorageError::Unavailable {
            op: "put",
            key: key.to_string(),
            source,
        });
        self.observe("put", &r);
        r
    }

    /// Every object whose key starts with the folder `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        use futures::TryStreamExt;
        let path = ObjectPath::from(prefix);
        let r = self
            .store
            .list(Some(&path))
            .map_ok(|m| ObjectInfo {
                key: m.location.to_string(),
                size: m.size,
                last_modified: m.last_modified,
            })
            .try_collect::<Vec<_>>()
            .await
            .map(|mut v| {
                v.sort_by(|a, b| a.key.cmp(&b.key));
                v
            })
            .map_err(|source| StorageError::Unavailable {
                op: "list",
                key: prefix.to_string(),
                source,
            });
        self.observe("list", &r);
        r
    }

    /// Deletes `key`; an object that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let r = match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StorageError::Unavailable {
                op: "delete",
                key: key.to_string(),
                source,
            }),
        };
        self.observe("delete", &r);
        r
    }

    fn observe<T>(&self, op: &str, r: &Result<T, StorageError>) {
        self.metrics.storage_op(op, r.is_ok());
    }
}

/// Runs `op` up to `attempts` times, sleeping `first`, 2×`first`, 4×`first`, … (with
/// jitter, so instances retrying together spread out) between failed attempts.
pub(crate) async fn retry_with_backoff<T, E, F, Fut>(
    what: &str,
    key: &str,
    attempts: u32,
    first: Duration,
    mut op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = first;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => {
                if attempt > 1 {
                    tracing::info!(what, key, attempt, "object storage recovered on retry");
                }
                return Ok(v);
            }
            Err(e) if attempt >= attempts => {
                tracing::error!(what, key, attempt, error = %e, "object storage failed; giving up");
                return Err(e);
            }
            Err(e) => {
                let jitter = rand::random_range(0..=delay.as_millis() as u64 / 2);
                let wait = delay + Duration::from_millis(jitter);
                tracing::warn!(what, key, attempt, error = %e, ?wait, "object storage failed; retrying");
                tokio::time::sleep(wait).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_until_success() {
        let calls = AtomicU32::new(0);
        let r: Result<u32, String> =
            retry_with_backoff("put", "k", 4, Duration::from_millis(1), || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 {
                    Err(format!("fail {n}"))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(r, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let r: Result<(), String> =
            retry_with_backoff("put", "k", 3, Duration::from_millis(20), || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Err(format!("fail {n}"))
            })
            .await;
        assert_eq!(r, Err("fail 3".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "backs off 20 ms then 40 ms"
        );
    }

    fn settings(url: &str) -> Settings {
        let mut s = Settings::defaults().expect("defaults");
        s.storage_url = url.into();
        s
    }

    #[tokio::test]
    async fn local_round_trip_and_atomic_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().join("store").display());
        let st = Storage::build(&settings(&url), Metrics::new()).expect("builds");
        assert!(st.served_locally());
        assert_eq!(
            st.public_url("ab.png"),
            "http://127.0.0.1:8080/images/ab.png"
        );
        assert!(!st.exists("ab.png").await.expect("head"));
        assert_eq!(st.get("ab.png").await.expect("get"), None);
        st.put("ab.png", Bytes::from_static(b"png"), "image/png")
            .await
            .expect("put");
        assert!(st.exists("ab.png").await.expect("head"));
        assert_eq!(
            st.get("ab.png").await.expect("get").as_deref(),
            Some(&b"png"[..])
        );
        // Only the final object is left: the staging file was renamed into place.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("store"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["ab.png".to_string()]);
    }

    #[tokio::test]
    async fn broken_local_store_is_an_error_not_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let url = format!("file://{}", root.display());
        let st = Storage::build(&settings(&url), Metrics::new()).expect("builds");
        std::fs::remove_dir(&root).expect("rmdir");
        std::fs::write(&root, b"not a directory").expect("file in its place");
        assert!(st.exists("ab.png").await.is_err());
        assert!(
            st.put("ab.png", Bytes::from_static(b"x"), "image/png")
                .await
                .is_err()
        );
    }

    #[test]
    fn s3_needs_credentials() {
        let s = settings("s3://bucket?endpoint=http://127.0.0.1:9&region=us-east-1");
        let e = Storage::build(&s, Metrics::new()).expect_err("no credentials");
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
    }

    #[test]
    fn s3_public_urls() {
        let mut s = settings(
            "s3://codes?endpoint=http://127.0.0.1:9000&region=us-east-1&public_base=https://cdn.example.com/x/",
        );
        s.aws_access_key_id = Some("AKID".into());
        s.aws_secret_access_key = Some("secret".into());
        let st = Storage::build(&s, Metrics::new()).expect("builds");
        assert!(!st.served_locally());
        assert_eq!(st.public_url("k.png"), "https://cdn.example.com/x/k.png");
        s.storage_url = "s3://codes?endpoint=http://127.0.0.1:9000/".into();
        let st = Storage::build(&s, Metrics::new()).expect("builds");
        assert_eq!(st.public_url("k.png"), "http://127.0.0.1:9000/codes/k.png");
    }
}
