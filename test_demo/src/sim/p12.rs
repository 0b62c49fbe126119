//! `apiclient_cert.p12`: the merchant certificate, its chain and its key as PKCS#12, written
//! by `p12-keystore`. Two profiles: [`Profile::Modern`] (PBES2 with PBKDF2-HMAC-SHA256 and
//! AES-256-CBC, HMAC-SHA256 MAC), what OpenSSL 3 writes by default, and [`Profile::Legacy`]
//! (pbeWithSHAAnd40BitRC2-CBC, HMAC-SHA1 MAC), the profile of the files WeChat hands
//! merchants, which OpenSSL 3 reads only with its legacy provider.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use sha1::{Digest, Sha1};

/// OpenSSL's default iteration count for both the encryption and the MAC key.
const ITERATIONS: u32 = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Modern,
    Legacy,
}

/// Writes a PKCS#12 file holding `cert_der` with its PKCS#8 key `key_pkcs8_der` (and the
/// `chain` certificates after it), protected by `password`, under the alias `friendly_name`.
pub fn write_pkcs12(
    cert_der: &[u8],
    key_pkcs8_der: &[u8],
    chain: &[&[u8]],
    password: &str,
    friendly_name: &str,
    profile: Profile,
) -> anyhow::Result<Vec<u8>> {
    let mut certs = vec![Certificate::from_der(cert_der)?];
    for c in chain {
        certs.push(Certificate::from_der(c)?);
    }
    let key = PrivateKey::from_der(key_pkcs8_der)?;
    // As OpenSSL does: the local key id is the SHA-1 of the certificate.
    let local_key_id = Sha1::digest(cert_der).to_vec();
    let mut ks = KeyStore::new();
    ks.add_entry(
        friendly_name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    let (encryption, mac) = match profile {
        Profile::Modern => (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        ),
        // The crate's name for pbeWithSHAAnd40BitRC2-CBC (OID 1.2.840.113549.1.12.1.6).
        Profile::Legacy => (
            EncryptionAlgorithm::PbeWithShaAnd40BitRc4Cbc,
            MacAlgorithm::HmacSha1,
        ),
    };
    Ok(ks
        .writer(password)
        .encryption_algorithm(encryption)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(ITERATIONS)
        .write()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of an algorithm OID, as it appears inside the file.
    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
    const OID_RC2_40: &[u8] = &[
        0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06,
    ];
    const OID_PBES2: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d,
    ];

    fn round_trip(profile: Profile) -> Vec<u8> {
        let pki = crate::sim::tls::generate("1900000109").expect("pki");
        let der = write_pkcs12(
            &pki.client_cert_der,
            &pki.client_key_der,
            &[pki.ca_cert_der.as_slice()],
            "1900000109",
            "apiclient_cert",
            profile,
        )
        .expect("writes");
        // Read back the way the product reads WECHAT_PAY_P12.
        let ks =
            KeyStore::from_pkcs12(&der, "1900000109", p12_keystore::Pkcs12ImportPolicy::Strict)
                .expect("reads");
        let (_, chain) = ks.private_key_chain().expect("a key");
        assert_eq!(chain.key().as_der(), pki.client_key_der.as_slice());
        assert_eq!(chain.certs()[0].as_der(), pki.client_cert_der.as_slice());
        assert_eq!(chain.certs().len(), 2, "certificate and CA");
        assert!(
            KeyStore::from_pkcs12(&der, "wrong", p12_keystore::Pkcs12ImportPolicy::Strict).is_err()
        );
        der
    }

    #[test]
    fn modern_profile_is_pbes2() {
        let der = round_trip(Profile::Modern);
        assert!(contains(&der, OID_PBES2));
        assert!(!contains(&der, OID_RC2_40));
    }

    #[test]
    fn legacy_profile_is_rc2_40() {
        let der = round_trip(Profile::Legacy);
        assert!(contains(&der, OID_RC2_40));
        assert!(!contains(&der, OID_PBES2));
    }
}
