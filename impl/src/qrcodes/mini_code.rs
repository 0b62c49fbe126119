//! Mini-program codes, made once and then served from caches.
//!
//! A code is named by its content key: hex SHA-256 of the appid and the exact request
//! body sent to WeChat, plus the image's extension. Lookup goes
//! 1. this process's memory of codes known to be in the object store,
//! 2. the local cache directory (a file there is always already in the store),
//! 3. the object store, which is the cache shared by every instance,
//! 4. WeChat, whose image is kept locally before it is uploaded, so that a failed
//!    upload is retried later from those bytes instead of by calling WeChat again.
//!
//! Concurrent identical requests in one process share one lookup (single-flight). The
//! lookup runs in its own task, so a client hanging up does not waste a WeChat call
//! that is already under way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use sha2::{Digest, Sha256};

use campus_dal::UserId;

use crate::limits::{Limit, LimitError, Limits};
use crate::storage::{Storage, StorageError};
use crate::wechat::mini::MiniClient;
use crate::wechat::wxacode::{ImageFormat, WxaCodeError, WxaCodeParams, WxaImage};

/// Bumped when the naming or the pinned drawing options change, so old names are not reused.
const KEY_VERSION: &str = "wxacode-v1";
/// The memory of stored codes is dropped past this many entries; the local cache
/// directory answers for them afterwards.
const MAX_KNOWN: usize = 100_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MiniCodeError {
    #[error(transparent)]
    Code(Arc<WxaCodeError>),
    #[error(transparent)]
    Storage(Arc<StorageError>),
    #[error("mini-program code task failed: {0}")]
    Internal(String),
    #[error(transparent)]
    Limited(Arc<LimitError>),
}

impl From<LimitError> for MiniCodeError {
    fn from(e: LimitError) -> Self {
        MiniCodeError::Limited(Arc::new(e))
    }
}

impl From<WxaCodeError> for MiniCodeError {
    fn from(e: WxaCodeError) -> Self {
        MiniCodeError::Code(Arc::new(e))
    }
}

impl From<StorageError> for MiniCodeError {
    fn from(e: StorageError) -> Self {
        MiniCodeError::Storage(Arc::new(e))
    }
}

/// Where a code came from, for the `X-Cache` header and the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSource {
    Memory,
    LocalCache,
    Store,
    /// Made from bytes WeChat returned earlier whose upload had failed.
    Pending,
    Wechat,
}

impl CodeSource {
    pub fn is_hit(self) -> bool {
        !matches!(self, CodeSource::Wechat)
    }
}

#[derive(Clone, Debug)]
pub struct MiniCode {
    pub url: String,
    /// The object key: `<64 hex>.png` or `<64 hex>.jpg`.
    pub key: String,
    pub source: CodeSource,
}

type Flight = Shared<BoxFuture<'static, Result<MiniCode, MiniCodeError>>>;

/// The process-wide state of the code cache.
struct MiniCodes {
    /// Local cache files: `<hash>.<ext>` (in the store) and `pending/<hash>.<ext>`.
    dir: PathBuf,
    flights: Mutex<HashMap<String, Flight>>,
    known: Mutex<HashMap<String, ImageFormat>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked: every update is one insert/remove.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MiniCodes {
    /// The cache directory is namespaced by the store, so switching `STORAGE_URL` never
    /// hands out URLs of objects the new store does not have.
    fn new(cache_dir: &Path, storage: &Storage) -> Self {
        let ns = hex::encode(&Sha256::digest(storage.identity().as_bytes())[..8]);
        Self {
            dir: cache_dir.join(ns),
            flights: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self, hash: &str) -> Option<ImageFormat> {
        lock(&self.known).get(hash).copied()
    }

    fn remember(&self, hash: &str, format: ImageFormat) {
        let mut k = lock(&self.known);
        if k.len() >= MAX_KNOWN {
            k.clear();
        }
        k.insert(hash.to_string(), format);
    }

    fn local_path(&self, hash: &str, format: ImageFormat) -> PathBuf {
        self.dir.join(format!("{hash}.{}", format.extension()))
    }

    fn pending_path(&self, hash: &str, format: ImageFormat) -> PathBuf {
        self.dir
            .join("pending")
            .join(format!("{hash}.{}", format.extension()))
    }
}

/// The content key's hash part: everything WeChat draws from is in it.
pub fn content_hash(appid: &str, params: &WxaCodeParams) -> String {
    let mut h = Sha256::new();
    h.update(KEY_VERSION.as_bytes());
    h.update([0]);
    h.update(appid.as_bytes());
    h.update([0]);
    // serde_json's maps are sorted, so equal bodies serialise identically.
    h.update(params.body().to_string().as_bytes());
    hex::encode(h.finalize())
}

pub fn object_key(hash: &str, format: ImageFormat) -> String {
    format!("{hash}.{}", format.extension())
}

/// `<64 lowercase hex>.<png|jpg>`, the only names ever stored; anything else (paths,
/// `..`, staging files) is refused before it reaches the store.
pub fn parse_object_key(key: &str) -> Option<ImageFormat> {
    let (hash, ext) = key.split_once('.')?;
    (hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| ImageFormat::from_extension(ext))
    .flatten()
}

/// Writes via a temporary file and a rename, so a reader never sees a partial file.
async fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    if let Err(e) = tokio::fs::write(&tmp, bytes).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, path).await.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

/// The mini-program code service.
#[derive(Clone)]
pub struct QrCodes {
    mini: MiniClient,
    storage: Storage,
    codes: Arc<MiniCodes>,
    limits: Option<Limits>,
}

impl QrCodes {
    pub fn new(mini: MiniClient, storage: Storage, cache_dir: &Path) -> Self {
        let codes = Arc::new(MiniCodes::new(cache_dir, &storage));
        Self {
            mini,
            storage,
            codes,
            limits: None,
        }
    }

    /// Users' requests spend `qrcode_user` when they start a new code.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// [`QrCodes::mini_program_code`] for a user: a code no request has started on this
    /// instance yet may need a `getwxacodeunlimit` call from the app's shared quota, so it
    /// spends one of the user's `qrcode_user` tokens; codes already known cost nothing.
    pub async fn mini_program_code_for(
        &self,
        user: UserId,
        params: WxaCodeParams,
    ) -> Result<MiniCode, MiniCodeError> {
        let hash = content_hash(self.mini.appid(), &params);
        let started =
            self.codes.known(&hash).is_some() || lock(&self.codes.flights).contains_key(&hash);
        if !started && let Some(limits) = &self.limits {
            limits.check(Limit::QrcodeUser, &user.to_string()).await?;
        }
        self.mini_program_code(params).await
    }

    /// The public URL of the mini-program code for `params`, made at most once.
    pub async fn mini_program_code(
        &self,
        params: WxaCodeParams,
    ) -> Result<MiniCode, MiniCodeError> {
        let hash = content_hash(self.mini.appid(), &params);
        if let Some(format) = self.codes.known(&hash) {
            return Ok(self.code_at(&hash, format, CodeSource::Memory));
        }
        let flight = {
            let mut flights = lock(&self.codes.flights);
            match flights.get(&hash) {
                Some(f) => f.clone(),
                None => {
                    let s = self.clone();
                    let h = hash.clone();
                    let task = tokio::spawn(async move {
                        let r = s.find_or_make_code(&h, &params).await;
                        // Removed by the task itself (after `remember`), so the entry goes
                        // even when every waiting request was cancelled.
                        lock(&s.codes.flights).remove(&h);
                        r
                    });
                    let f: Flight = async move {
                        task.await
                            .unwrap_or_else(|e| Err(MiniCodeError::Internal(e.to_string())))
                    }
                    .boxed()
                    .shared();
                    flights.insert(hash, f.clone());
                    f
                }
            }
        };
        flight.await
    }

    fn code_at(&self, hash: &str, format: ImageFormat, source: CodeSource) -> MiniCode {
        let key = object_key(hash, format);
        MiniCode {
            url: self.storage.public_url(&key),
            key,
            source,
        }
    }

    async fn find_or_make_code(
        &self,
        hash: &str,
        params: &WxaCodeParams,
    ) -> Result<MiniCode, MiniCodeError> {
        let codes = &self.codes;
        // A flight that ended between the caller's look and this one's start.
        if let Some(format) = codes.known(hash) {
            return Ok(self.code_at(hash, format, CodeSource::Memory));
        }
        for format in ImageFormat::ALL {
            if is_file(&codes.local_path(hash, format)).await {
                codes.remember(hash, format);
                return Ok(self.code_at(hash, format, CodeSource::LocalCache));
            }
        }
        // Another instance may have made it. A store that cannot answer is an error, not
        // a miss: calling WeChat then would only produce an image with nowhere to go.
        for format in ImageFormat::ALL {
            let key = object_key(hash, format);
            if self.storage.exists(&key).await? {
                match self.storage.get(&key).await {
                    Ok(Some(bytes)) => {
                        self.keep_local(&codes.local_path(hash, format), &bytes)
                            .await
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "could not copy a stored code to the local cache")
                    }
                }
                codes.remember(hash, format);
                return Ok(self.code_at(hash, format, CodeSource::Store));
            }
        }
        let (image, source) = match self.pending_image(hash).await {
            Some(image) => (image, CodeSource::Pending),
            None => {
                let image = self.mini.get_unlimited_code(params).await?;
                let pending = codes.pending_path(hash, image.format);
                self.keep_local(&pending, &image.bytes).await;
                (image, CodeSource::Wechat)
            }
        };
        let key = object_key(hash, image.format);
        self.storage
            .put(&key, image.bytes.clone(), image.format.content_type())
            .await?;
        let local = codes.local_path(hash, image.format);
        let pending = codes.pending_path(hash, image.format);
        if tokio::fs::rename(&pending, &local).await.is_err() {
            self.keep_local(&local, &image.bytes).await;
        }
        codes.remember(hash, image.format);
        tracing::info!(%key, ?source, "mini-program code stored");
        Ok(self.code_at(hash, image.format, source))
    }

    async fn pending_image(&self, hash: &str) -> Option<WxaImage> {
        for format in ImageFormat::ALL {
            let path = self.codes.pending_path(hash, format);
            if let Ok(bytes) = tokio::fs::read(&path).await
                && ImageFormat::sniff(&bytes) == Some(format)
            {
                return Some(WxaImage {
                    bytes: Bytes::from(bytes),
                    format,
                });
            }
        }
        None
    }

    /// The local cache is an optimisation: a full or read-only disk costs speed, not
    /// correctness, so failures are logged and the request goes on.
    async fn keep_local(&self, path: &Path, bytes: &[u8]) {
        if let Err(e) = write_atomic(path, bytes).await {
            tracing::warn!(path = %path.display(), error = %e, "could not write the local code cache");
        }
    }

    /// An object for `GET /images/<key>`: only with `file://` storage, only for names
    /// this module makes. `None` means 404.
    pub async fn stored_code_image(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, ImageFormat)>, StorageError> {
        let Some(format) = parse_object_key(key) else {
            return Ok(None);
        };
        if !self.storage.served_locally() {
            return Ok(None);
        }
        Ok(self.storage.get(key).await?.map(|b| (b, format)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let a =
            WxaCodeParams::parse(Some("id=1"), Some("pages/a"), None, None, None).expect("valid");
        let b = WxaCodeParams::parse(Some("id=1"), Some("pages/a"), Some("430"), None, None)
            .expect("valid");
        let c =
            WxaCodeParams::parse(Some("id=2"), Some("pages/a"), None, None, None).expect("valid");
        assert_eq!(content_hash("wx1", &a), content_hash("wx1", &b));
        assert_ne!(content_hash("wx1", &a), content_hash("wx1", &c));
        assert_ne!(content_hash("wx1", &a), content_hash("wx2", &a));
        let key = object_key(&content_hash("wx1", &a), ImageFormat::Png);
        assert_eq!(parse_object_key(&key), Some(ImageFormat::Png));
        for bad in [
            "../etc/passwd",
            "cache/x.png",
            &key.to_uppercase(),
            &format!("{key}#1"),
            &key.replace(".png", ".gif"),
            &key[1..],
            "",
        ] {
            assert_eq!(parse_object_key(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn atomic_write_leaves_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a/b.png");
        write_atomic(&p, b"one").await.expect("write");
        write_atomic(&p, b"two").await.expect("overwrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path().join("a"))
                .expect("dir")
                .count(),
            1
        );
    }
}
