//! The merchant certificate for mutual TLS (`secapi/pay/refund`).
//!
//! WeChat hands merchants `apiclient_cert.pem` + `apiclient_key.pem` and
//! `apiclient_cert.p12` (password: the mch id). rustls reads only PEM, and older `.p12`
//! files use `pbeWithSHA1And40BitRC2-CBC`, which OpenSSL 3 refuses without its legacy
//! provider; so a `.p12` is read here in pure Rust (`p12-keystore`, which reads RC2-40,
//! 3DES and PBES2/AES) and turned into PEM for reqwest.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::wechat::http::read_file;

/// Where the merchant certificate comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// `WECHAT_PAY_CLIENT_CERT` and `WECHAT_PAY_CLIENT_KEY`.
    Pem { cert: PathBuf, key: PathBuf },
    /// `WECHAT_PAY_P12`; WeChat's password is the mch id.
    P12 { path: PathBuf, password: String },
    /// No certificate: refunds are refused locally.
    None,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pem { cert, key } => f
                .debug_struct("Pem")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            Self::P12 { path, .. } => f
                .debug_struct("P12")
                .field("path", path)
                .field("password", &"..")
                .finish(),
            Self::None => f.write_str("None"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no merchant certificate configured")]
    NotConfigured,
    #[error(transparent)]
    Read(#[from] crate::wechat::http::HttpSetupError),
    #[error("{0}: no certificate found in PEM")]
    NoCertificate(String),
    #[error("{0}: no private key found in PEM")]
    NoPrivateKey(String),
    #[error("{0}: unreadable PEM")]
    BadPem(String),
    #[error("{path}: cannot read PKCS#12 (wrong password, or corrupt file): {reason}")]
    P12 { path: String, reason: String },
    #[error("{0}: PKCS#12 holds no private key with its certificate")]
    P12NoKey(String),
    #[error("merchant certificate and private key do not belong together ({0})")]
    KeyMismatch(String),
}

impl ClientIdentity {
    /// Loads the identity as one PEM buffer (certificate chain, then PKCS#8 or PKCS#1 key),
    /// checking that key and certificate parse and belong together.
    pub fn load_pem(&self) -> Result<Vec<u8>, IdentityError> {
        let pem = match self {
            Self::None => return Err(IdentityError::NotConfigured),
            Self::Pem { cert, key } => {
                let mut buf = read_file(cert)?;
                if !buf.ends_with(b"\n") {
                    buf.push(b'\n');
                }
                let key_pem = secrecy::zeroize::Zeroizing::new(read_file(key)?);
                let origin = format!("{} + {}", cert.display(), key.display());
                let certs = pem_certs(&buf, &origin)?;
                if certs.is_empty() {
                    return Err(IdentityError::NoCertificate(cert.display().to_string()));
                }
                let (key_only, _) = pem_parts(&key_pem, &key.display().to_string())?;
                if key_only.is_none() {
                    return Err(IdentityError::NoPrivateKey(key.display().to_string()));
                }
                buf.extend_from_slice(&key_pem);
                buf
            }
            Self::P12 { path, password } => {
                let der = read_file(path)?;
                p12_to_pem(&der, password, &path.display().to_string())?
            }
        };
        check_pair(&pem)?;
        Ok(pem)
    }

    /// The reqwest identity for mutual TLS.
    pub fn load(&self) -> Result<reqwest::Identity, IdentityError> {
        let pem = secrecy::zeroize::Zeroizing::new(self.load_pem()?);
        reqwest::Identity::from_pem(&pem).map_err(|e| IdentityError::BadPem(e.to_string()))
    }
}

/// Reads a PKCS#12 file into PEM: the key's certificate chain, then its PKCS#8 key.
pub fn p12_to_pem(der: &[u8], password: &str, origin: &str) -> Result<Vec<u8>, IdentityError> {
    let ks = p12_keystore::KeyStore::from_pkcs12(
        der,
        password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|e| IdentityError::P12 {
        path: origin.to_string(),
        reason: e.to_string(),
    })?;
    let Some((_alias, chain)) = ks.private_key_chain() else {
        return Err(IdentityError::P12NoKey(origin.to_string()));
    };
    if chain.certs().is_empty() {
        return Err(IdentityError::P12NoKey(origin.to_string()));
    }
    let mut out = Vec::new();
    for c in chain.certs() {
        push_pem(&mut out, "CERTIFICATE", c.as_der());
    }
    push_pem(&mut out, "PRIVATE KEY", chain.key().as_der());
    Ok(out)
}

fn push_pem(out: &mut Vec<u8>, label: &str, der: &[u8]) {
    let b64 = secrecy::zeroize::Zeroizing::new(B64.encode(der));
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
}

type Parts = (Option<PrivateKeyDer<'static>>, Vec<CertificateDer<'static>>);

/// The certificates and the (first) private key of a PEM buffer: PKCS#8, PKCS#1 or SEC1.
fn pem_parts(pem: &[u8], origin: &str) -> Result<Parts, IdentityError> {
    let bad = || IdentityError::BadPem(origin.to_string());
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    let key = match PrivateKeyDer::from_pem_slice(pem) {
        Ok(k) => Some(k),
        Err(pem::Error::NoItemsFound) => None,
        Err(_) => return Err(bad()),
    };
    Ok((key, certs))
}

fn pem_certs(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    Ok(pem_parts(pem, origin)?.1)
}

/// Both parse, and the key is the certificate's.
fn check_pair(pem: &[u8]) -> Result<(), IdentityError> {
    let (key, certs) = pem_parts(pem, "merchant identity")?;
    let key = key.ok_or_else(|| IdentityError::NoPrivateKey("merchant identity".into()))?;
    if certs.is_empty() {
        return Err(IdentityError::NoCertificate("merchant identity".into()));
    }
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .map(|_| ())
        .map_err(|e| IdentityError::KeyMismatch(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) const TEST_MCH_ID: &str = "1900000109";

    pub(crate) fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/wechat/pay/testdata")
            .join(name)
    }

    fn pem_identity() -> ClientIdentity {
        ClientIdentity::Pem {
            cert: testdata("test_merchant_cert.crt"),
            key: testdata("test_merchant_key.key"),
        }
    }

    #[test]
    fn loads_pem_pair() {
        let pem = pem_identity().load_pem().expect("pem");
        let (key, certs) = pem_parts(&pem, "t").expect("parts");
        assert!(key.is_some());
        assert_eq!(certs.len(), 1);
        pem_identity().load().expect("reqwest identity");
    }

    fn p12(name: &str, password: &str) -> ClientIdentity {
        ClientIdentity::P12 {
            path: testdata(name),
            password: password.into(),
        }
    }

    #[test]
    fn loads_legacy_rc2_40_p12() {
        // Made by `openssl pkcs12 -export -legacy`: RC2-40 certificate bag, 3DES key,
        // the profile of the `apiclient_cert.p12` WeChat hands out.
        let from_p12 = p12("test_merchant_legacy.pfx", TEST_MCH_ID)
            .load_pem()
            .expect("legacy p12");
        let from_pem = pem_identity().load_pem().expect("pem");
        let (k1, c1) = pem_parts(&from_p12, "p12").expect("parts");
        let (k2, c2) = pem_parts(&from_pem, "pem").expect("parts");
        assert_eq!(c1, c2, "same certificate");
        assert_eq!(
            k1.expect("key").secret_der(),
            k2.expect("key").secret_der(),
            "same PKCS#8 key"
        );
        p12("test_merchant_legacy.pfx", TEST_MCH_ID)
            .load()
            .expect("reqwest identity");
    }

    #[test]
    fn loads_modern_aes_p12() {
        p12("test_merchant_aes.pfx", TEST_MCH_ID)
            .load()
            .expect("aes p12");
    }

    #[test]
    fn wrong_password_is_a_clear_error() {
        let err = p12("test_merchant_legacy.pfx", "wrong")
            .load_pem()
            .expect_err("must fail");
        assert!(matches!(err, IdentityError::P12 { .. }), "{err:?}");
        assert!(err.to_string().contains("test_merchant_legacy.pfx"));
    }

    #[test]
    fn missing_files_and_mismatched_pairs_fail() {
        let missing = ClientIdentity::Pem {
            cert: testdata("nope.crt"),
            key: testdata("nope.key"),
        };
        assert!(matches!(missing.load_pem(), Err(IdentityError::Read(_))));
        assert!(matches!(
            ClientIdentity::None.load_pem(),
            Err(IdentityError::NotConfigured)
        ));

        // A key that is not the certificate's.
        let mismatched = ClientIdentity::Pem {
            cert: testdata("test_merchant_cert.crt"),
            key: testdata("test_other_key.key"),
        };
        assert!(matches!(
            mismatched.load_pem(),
            Err(IdentityError::KeyMismatch(_))
        ));

        // Key file passed as certificate.
        let swapped = ClientIdentity::Pem {
            cert: testdata("test_merchant_key.key"),
            key: testdata("test_merchant_cert.crt"),
        };
        assert!(swapped.load_pem().is_err());
    }

    #[test]
    fn debug_hides_password() {
        let id = p12("x.p12", "secret-password");
        assert!(!format!("{id:?}").contains("secret-password"));
    }
}
