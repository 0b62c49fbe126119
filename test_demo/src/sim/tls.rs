//! The simulator's PKI and TLS setup.
//!
//! At start a fresh root CA is made (rcgen, ECDSA P-256), and signed by it: the server
//! certificate (SAN 127.0.0.1 and localhost, serverAuth) and the merchant certificate
//! `apiclient_cert` (CN = mch_id, clientAuth). Real merchant keys are RSA-2048; ring cannot
//! generate RSA keys, so these are ECDSA, which every TLS stack used here accepts.
//!
//! Client authentication is optional at the handshake and required by the `/secapi/` handlers:
//! [`on_connect`] records the verified peer certificate of each connection.

use std::any::Any;
use std::sync::Arc;

use actix_web::dev::Extensions;
use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

/// Everything the simulator's TLS needs, and what a client is handed.
pub struct SimPki {
    pub ca_cert_pem: String,
    pub ca_cert_der: Vec<u8>,
    pub server_cert_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
    pub client_cert_pem: String,
    pub client_cert_der: Vec<u8>,
    pub client_key_pem: String,
    pub client_key_der: Vec<u8>,
}

/// A fixed validity window (2024-01-01 .. 2049-12-31) around any plausible test clock.
fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

/// Generates the CA, the server certificate and the merchant client certificate.
pub fn generate(mch_id: &str) -> anyhow::Result<SimPki> {
    // Root CA.
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Campus Errand WeChat Simulator Root CA");
    dn.push(DnType::OrganizationName, "wechat-sim");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    validity(&mut ca_params);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    // Server certificate for 127.0.0.1 and localhost.
    let server_key = KeyPair::generate().context("server key")?;
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .context("server params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "api.weixin.qq.com (simulated)");
    sp.distinguished_name = dn;
    validity(&mut sp);
    sp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.use_authority_key_identifier_extension = true;
    let server_cert = sp
        .signed_by(&server_key, &issuer)
        .context("server certificate")?;

    // Merchant client certificate.
    let client_key = KeyPair::generate().context("merchant key")?;
    let mut cp = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, mch_id);
    dn.push(DnType::OrganizationName, "WeChat Pay merchant (simulated)");
    dn.push(DnType::OrganizationalUnitName, "Tenpay.com CA Center");
    cp.distinguished_name = dn;
    validity(&mut cp);
    cp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    cp.use_authority_key_identifier_extension = true;
    let client_cert = cp
        .signed_by(&client_key, &issuer)
        .context("merchant certificate")?;

    Ok(SimPki {
        ca_cert_pem: ca_cert.pem(),
        ca_cert_der: ca_cert.der().to_vec(),
        server_cert_der: server_cert.der().to_vec(),
        server_key_der: server_key.serialize_der(),
        client_cert_pem: client_cert.pem(),
        client_cert_der: client_cert.der().to_vec(),
        client_key_pem: client_key.serialize_pem(),
        client_key_der: client_key.serialize_der(),
    })
}

/// rustls server config: our server certificate (plus the CA in the chain), client
/// certificates verified against our CA but optional.
pub fn server_config(pki: &SimPki) -> anyhow::Result<rustls::ServerConfig> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_cert_der.clone()))
        .context("CA into root store")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("client verifier")?;
    let chain = vec![
        CertificateDer::from(pki.server_cert_der.clone()),
        CertificateDer::from(pki.ca_cert_der.clone()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("server certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The verified client certificate of a connection (`None`: the client presented none).
#[derive(Clone, Debug)]
pub struct PeerCert(pub Option<Vec<u8>>);

type TlsStream = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;

/// `HttpServer::on_connect` callback: records the peer certificate (already verified against
/// our CA by rustls during the handshake) and the socket (for simulated resets).
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tls) = conn.downcast_ref::<TlsStream>() {
        super::api_faults::record_socket(tls.get_ref().0, ext);
    }
    let cert = conn.downcast_ref::<TlsStream>().and_then(|tls| {
        let (_, session) = tls.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.as_ref().to_vec())
    });
    ext.insert(PeerCert(cert));
}
