//! RSA private keys in PEM, for the server-held signing key. WebCrypto imports PKCS#8 only, so a
//! PKCS#1 key (`BEGIN RSA PRIVATE KEY`, what `expo-updates codesigning:generate` writes) is
//! wrapped into a PKCS#8 `PrivateKeyInfo` here, in plain Rust.

use crate::protocol::hash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemError {
    NoKey,
    Encrypted,
    Unsupported(String),
    Malformed(&'static str),
}

impl std::fmt::Display for PemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemError::NoKey => f.write_str("no PEM private key found"),
            PemError::Encrypted => {
                f.write_str("encrypted private keys are not supported; export it without a passphrase")
            }
            PemError::Unsupported(label) => {
                write!(f, "unsupported PEM block {label:?}; expected RSA PRIVATE KEY or PRIVATE KEY")
            }
            PemError::Malformed(why) => write!(f, "malformed private key: {why}"),
        }
    }
}

/// rsaEncryption OID 1.2.840.113549.1.1.1 with NULL parameters, DER.
const RSA_ALGORITHM_ID: [u8; 15] =
    [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// Returns the key as PKCS#8 DER, whichever of the two PEM forms it came in.
pub fn private_key_pkcs8_der(pem: &str) -> Result<Vec<u8>, PemError> {
    let (label, der) = decode_pem(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => {
            // PrivateKeyInfo ::= SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING }
            let (body, rest) = read_tlv(&der, 0x30)?;
            if !rest.is_empty() {
                return Err(PemError::Malformed("trailing data"));
            }
            let (_version, body) = read_tlv(body, 0x02)?;
            let (alg, _) = read_tlv(body, 0x30)?;
            if !alg.starts_with(&RSA_ALGORITHM_ID[2..13]) {
                return Err(PemError::Malformed("not an RSA key"));
            }
            Ok(der)
        }
        "RSA PRIVATE KEY" => {
            let (body, rest) = read_tlv(&der, 0x30)?;
            if !rest.is_empty() || body.is_empty() {
                return Err(PemError::Malformed("not a single RSAPrivateKey"));
            }
            let mut inner = vec![0x02, 0x01, 0x00];
            inner.extend_from_slice(&RSA_ALGORITHM_ID);
            inner.extend(tlv(0x04, &der));
            Ok(tlv(0x30, &inner))
        }
        "ENCRYPTED PRIVATE KEY" => Err(PemError::Encrypted),
        other => Err(PemError::Unsupported(other.to_string())),
    }
}

/// The first PEM block that is a private key: `(label, DER bytes)`.
fn decode_pem(pem: &str) -> Result<(String, Vec<u8>), PemError> {
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else { continue };
        if !label.ends_with("PRIVATE KEY") {
            continue;
        }
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        for l in lines.by_ref() {
            if l == end {
                if label == "RSA PRIVATE KEY" && b64.is_empty() {
                    return Err(PemError::Malformed("empty body"));
                }
                let der = hash::base64_standard_decode(&b64).ok_or(PemError::Malformed("invalid base64"))?;
                return Ok((label.to_string(), der));
            }
            if l.contains(':') {
                // `Proc-Type: 4,ENCRYPTED` style headers mean a legacy encrypted key.
                return Err(PemError::Encrypted);
            }
            b64.push_str(l);
        }
        return Err(PemError::Malformed("missing END line"));
    }
    Err(PemError::NoKey)
}

fn read_tlv(der: &[u8], tag: u8) -> Result<(&[u8], &[u8]), PemError> {
    if der.first() != Some(&tag) {
        return Err(PemError::Malformed("unexpected DER tag"));
    }
    let (len, hdr) = match *der.get(1).ok_or(PemError::Malformed("truncated"))? {
        n if n < 0x80 => (n as usize, 2),
        n @ 0x81..=0x84 => {
            let k = (n - 0x80) as usize;
            let bytes = der.get(2..2 + k).ok_or(PemError::Malformed("truncated length"))?;
            (bytes.iter().fold(0usize, |a, &b| a << 8 | b as usize), 2 + k)
        }
        _ => return Err(PemError::Malformed("bad DER length")),
    };
    let end = hdr.checked_add(len).filter(|&e| e <= der.len()).ok_or(PemError::Malformed("truncated value"))?;
    Ok((&der[hdr..end], &der[end..]))
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS1: &str = include_str!("../../tests/fixtures/codesigning/keys/private-key.pem");

    #[test]
    fn pkcs1_is_wrapped_into_pkcs8() {
        let der = private_key_pkcs8_der(PKCS1).unwrap();
        // The wrapped key parses back as PKCS#8 and contains the original RSAPrivateKey.
        let (label, pkcs1) = decode_pem(PKCS1).unwrap();
        assert_eq!(label, "RSA PRIVATE KEY");
        assert!(der.windows(pkcs1.len()).any(|w| w == pkcs1.as_slice()));
        let b64 = hash::base64_standard(&der);
        let pkcs8_pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        assert_eq!(private_key_pkcs8_der(&pkcs8_pem).unwrap(), der, "PKCS#8 input passes through unchanged");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        assert_eq!(private_key_pkcs8_der("hello"), Err(PemError::NoKey));
        assert_eq!(
            private_key_pkcs8_der("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"),
            Err(PemError::Encrypted)
        );
        assert_eq!(
            private_key_pkcs8_der(
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----"
            ),
            Err(PemError::Encrypted)
        );
        assert!(matches!(
            private_key_pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----"),
            Err(PemError::Malformed(_))
        ));
        assert!(matches!(
            private_key_pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\nMAA=\n"),
            Err(PemError::Malformed(_))
        ));
        let truncated: String =
            PKCS1.lines().take(5).chain(["-----END RSA PRIVATE KEY-----"]).collect::<Vec<_>>().join("\n");
        assert!(private_key_pkcs8_der(&truncated).is_err());
        // A public key is not a private key.
        assert_eq!(
            private_key_pkcs8_der(include_str!("../../tests/fixtures/codesigning/keys/public-key.pem")),
            Err(PemError::NoKey)
        );
    }
}
