//! `STORAGE_URL`: `file://relative/dir`, `file:///abs/dir`, or
//! `s3://bucket?endpoint=http://host:port&region=r&public_base=https://cdn`.

use std::path::PathBuf;

use super::StorageError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    Local(PathBuf),
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: String,
        public_base: Option<String>,
    },
}

impl StorageUrl {
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| StorageError::Config(format!("{s}: {why}"));
        if let Some(rest) = s.strip_prefix("file://") {
            // Not parsed as a URL: `file://images` would make `images` a host name.
            if rest.is_empty() || rest.contains(['?', '#']) {
                return Err(bad("expected file://relative/dir or file:///abs/dir"));
            }
            return Ok(StorageUrl::Local(PathBuf::from(rest)));
        }
        if !s.starts_with("s3://") {
            return Err(bad("the scheme must be file:// or s3://"));
        }
        let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let bucket = u.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        if !matches!(u.path(), "" | "/") {
            return Err(bad("a key prefix after the bucket is not supported"));
        }
        let mut endpoint = None;
        let mut region = None;
        let mut public_base = None;
        for (k, v) in u.query_pairs() {
            let v = v.trim().to_string();
            match k.as_ref() {
                "endpoint" => endpoint = Some(http_url(&v).ok_or_else(|| bad("endpoint"))?),
                "region" if !v.is_empty() => region = Some(v),
                "public_base" => {
                    public_base = Some(http_url(&v).ok_or_else(|| bad("public_base"))?)
                }
                other => return Err(bad(&format!("unknown parameter {other}"))),
            }
        }
        Ok(StorageUrl::S3 {
            bucket,
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".into()),
            public_base,
        })
    }
}

fn http_url(v: &str) -> Option<String> {
    let u = url::Url::parse(v).ok()?;
    (matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .then(|| v.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        assert_eq!(
            StorageUrl::parse("file://images").expect("relative"),
            StorageUrl::Local("images".into())
        );
        assert_eq!(
            StorageUrl::parse("file:///var/lib/campus").expect("absolute"),
            StorageUrl::Local("/var/lib/campus".into())
        );
        assert!(StorageUrl::parse("file://").is_err());
        assert!(StorageUrl::parse("images").is_err());
        assert!(StorageUrl::parse("ftp://x").is_err());
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            StorageUrl::parse(
                "s3://codes?endpoint=http://127.0.0.1:9000/&region=ap-guangzhou&public_base=https://cdn.example.com"
            )
            .expect("s3"),
            StorageUrl::S3 {
                bucket: "codes".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "ap-guangzhou".into(),
                public_base: Some("https://cdn.example.com".into()),
            }
        );
        let StorageUrl::S3 { region, .. } = StorageUrl::parse("s3://b").expect("bare") else {
            panic!("s3");
        };
        assert_eq!(region, "us-east-1");
        assert!(StorageUrl::parse("s3://?region=x").is_err());
        assert!(StorageUrl::parse("s3://b/prefix").is_err());
        assert!(StorageUrl::parse("s3://b?endpoint=127.0.0.1:9000").is_err());
        assert!(StorageUrl::parse("s3://b?colour=blue").is_err());
    }
}
