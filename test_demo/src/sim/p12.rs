//! A minimal PKCS#12 (RFC 7292) writer for `apiclient_cert.p12`, in the form OpenSSL 3 writes
//! by default: the key in a pkcs8ShroudedKeyBag encrypted with PBES2 (PBKDF2-HMAC-SHA256,
//! AES-256-CBC), the certificates in a plain data SafeContents, an HMAC-SHA256 MAC with the
//! PKCS#12 key derivation. WeChat's own files use the legacy RC2/3DES algorithms; modern
//! readers accept this form.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

const ITERATIONS: u32 = 2048;

// ---- DER ----

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

fn explicit0(content: &[u8]) -> Vec<u8> {
    tlv(0xa0, content)
}

fn int(v: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.is_empty() || bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().expect("OID constants are numeric"))
        .collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut stack = vec![(a & 0x7f) as u8];
        let mut rest = a >> 7;
        while rest > 0 {
            stack.push(((rest & 0x7f) as u8) | 0x80);
            rest >>= 7;
        }
        stack.reverse();
        body.extend(stack);
    }
    tlv(0x06, &body)
}

fn bmp_string(s: &str) -> Vec<u8> {
    let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1e, &bytes)
}

const OID_DATA: &str = "1.2.840.113549.1.7.1";
const OID_SHROUDED_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.2";
const OID_CERT_BAG: &str = "1.2.840.113549.1.12.10.1.3";
const OID_X509_CERT: &str = "1.2.840.113549.1.9.22.1";
const OID_LOCAL_KEY_ID: &str = "1.2.840.113549.1.9.21";
const OID_FRIENDLY_NAME: &str = "1.2.840.113549.1.9.20";
const OID_PBES2: &str = "1.2.840.113549.1.5.13";
const OID_PBKDF2: &str = "1.2.840.113549.1.5.12";
const OID_HMAC_SHA256: &str = "1.2.840.113549.2.9";
const OID_AES256_CBC: &str = "2.16.840.1.101.3.4.1.42";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";

// ---- key derivation ----

fn pbkdf2_sha256_32(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = |data: &[&[u8]]| {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(password).expect("HMAC takes any key length");
        for d in data {
            m.update(d);
        }
        let out: [u8; 32] = m.finalize().into_bytes().into();
        out
    };
    let mut u = mac(&[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..iterations {
        u = mac(&[&u]);
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    t
}

/// RFC 7292 appendix B with SHA-256 (u = 32, v = 64), for a 32-byte output (one block).
fn pkcs12_kdf_sha256_32(password: &str, salt: &[u8], id: u8, iterations: u32) -> [u8; 32] {
    const V: usize = 64;
    let mut pass: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    pass.extend_from_slice(&[0, 0]);
    let fill = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let n = V * src.len().div_ceil(V);
        src.iter().copied().cycle().take(n).collect()
    };
    let mut input = vec![id; V];
    input.extend(fill(salt));
    input.extend(fill(&pass));
    let mut a: [u8; 32] = Sha256::digest(&input).into();
    for _ in 1..iterations {
        a = Sha256::digest(a).into();
    }
    a
}

// ---- structure ----

fn pbes2_encrypt(password: &str, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let salt: [u8; 16] = rand::random();
    let iv: [u8; 16] = rand::random();
    let key = pbkdf2_sha256_32(password.as_bytes(), &salt, ITERATIONS);
    let enc = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into());
    let ciphertext = enc.encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let alg = seq(&[
        &oid(OID_PBES2),
        &seq(&[
            &seq(&[
                &oid(OID_PBKDF2),
                &seq(&[
                    &octets(&salt),
                    &int(ITERATIONS),
                    &seq(&[&oid(OID_HMAC_SHA256), &null()]),
                ]),
            ]),
            &seq(&[&oid(OID_AES256_CBC), &octets(&iv)]),
        ]),
    ]);
    (alg, ciphertext)
}

fn bag_attributes(local_key_id: &[u8], friendly_name: Option<&str>) -> Vec<u8> {
    let mut attrs = vec![seq(&[
        &oid(OID_LOCAL_KEY_ID),
        &set(&[&octets(local_key_id)]),
    ])];
    if let Some(n) = friendly_name {
        attrs.insert(0, seq(&[&oid(OID_FRIENDLY_NAME), &set(&[&bmp_string(n)])]));
    }
    let refs: Vec<&[u8]> = attrs.iter().map(Vec::as_slice).collect();
    set(&refs)
}

fn cert_bag(cert_der: &[u8], attrs: Option<&[u8]>) -> Vec<u8> {
    let value = seq(&[&oid(OID_X509_CERT), &explicit0(&octets(cert_der))]);
    match attrs {
        Some(a) => seq(&[&oid(OID_CERT_BAG), &explicit0(&value), a]),
        None => seq(&[&oid(OID_CERT_BAG), &explicit0(&value)]),
    }
}

fn data_content_info(content: &[u8]) -> Vec<u8> {
    seq(&[&oid(OID_DATA), &explicit0(&octets(content))])
}

/// Writes a PKCS#12 file holding `cert_der` with its PKCS#8 key `key_pkcs8_der` (and the
/// `chain` certificates), protected by `password`.
pub fn write_pkcs12(
    cert_der: &[u8],
    key_pkcs8_der: &[u8],
    chain: &[&[u8]],
    password: &str,
    friendly_name: &str,
) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        !cert_der.is_empty() && !key_pkcs8_der.is_empty(),
        "empty input"
    );
    let local_key_id: [u8; 20] = Sha1::digest(cert_der).into();
    let attrs = bag_attributes(&local_key_id, Some(friendly_name));

    // Certificates: a plain SafeContents.
    let mut bags = vec![cert_bag(cert_der, Some(&attrs))];
    bags.extend(chain.iter().map(|c| cert_bag(c, None)));
    let refs: Vec<&[u8]> = bags.iter().map(Vec::as_slice).collect();
    let cert_safe = seq(&refs);

    // Key: a shrouded key bag.
    let (alg, encrypted) = pbes2_encrypt(password, key_pkcs8_der);
    let epki = seq(&[&alg, &octets(&encrypted)]);
    let key_bag = seq(&[&oid(OID_SHROUDED_KEY_BAG), &explicit0(&epki), &attrs]);
    let key_safe = seq(&[&key_bag]);

    let auth_safe = seq(&[
        &data_content_info(&cert_safe),
        &data_content_info(&key_safe),
    ]);

    // MAC over the AuthenticatedSafe's encoding.
    let mac_salt: [u8; 16] = rand::random();
    let mac_key = pkcs12_kdf_sha256_32(password, &mac_salt, 3, ITERATIONS);
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).expect("HMAC takes any key length");
    mac.update(&auth_safe);
    let digest = mac.finalize().into_bytes();
    let mac_data = seq(&[
        &seq(&[&seq(&[&oid(OID_SHA256), &null()]), &octets(&digest)]),
        &octets(&mac_salt),
        &int(ITERATIONS),
    ]);

    Ok(seq(&[&int(3), &data_content_info(&auth_safe), &mac_data]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_basics() {
        assert_eq!(
            oid(OID_SHA256),
            hex::decode("0609608648016503040201").expect("hex")
        );
        assert_eq!(int(3), vec![2, 1, 3]);
        assert_eq!(int(2048), vec![2, 2, 8, 0]);
        assert_eq!(int(128), vec![2, 2, 0, 128]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    /// RFC 6070-style check of PBKDF2-HMAC-SHA256 (published vector).
    #[test]
    fn pbkdf2_vector() {
        let k = pbkdf2_sha256_32(b"password", b"salt", 2);
        assert_eq!(
            hex::encode(k),
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
        );
    }
}
