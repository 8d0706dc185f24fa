//! RSA private keys in PEM, for the server-held signing key. WebCrypto imports PKCS#8 only, so a
//! PKCS#1 key (`BEGIN RSA PRIVATE KEY`, what `expo-updates codesigning:generate` writes) is
//! checked with `pkcs1` and wrapped into a PKCS#8 `PrivateKeyInfo` with `pkcs8`; a PKCS#8 key is
//! checked (an RSA key, a well-formed RSAPrivateKey inside) and passed through byte for byte.
//!
//! The base64 is decoded by `pem-rfc7468` (constant-time, via `base64ct`, which matters for key
//! material). That crate implements only RFC 7468's strict grammar (one document, 64-column
//! lines), while keys pasted into `wrangler secret put` arrive re-wrapped, indented, with CRLF
//! or after a certificate. So the first private-key block is cut out here and its base64 lines
//! re-wrapped (RFC 7468 §3 "lax" reading) before the strict decoder sees them.

use der::{Decode, Encode};
use pkcs8::PrivateKeyInfo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemError {
    /// No `BEGIN … PRIVATE KEY` block in the text.
    NoKey,
    /// PKCS#8 `ENCRYPTED PRIVATE KEY`, or a legacy `Proc-Type: 4,ENCRYPTED` block.
    Encrypted,
    /// A private key of another kind (`EC PRIVATE KEY`, …), with its label.
    Unsupported(String),
    /// An RSA key block whose PEM, base64 or DER is broken; says which.
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

/// Returns the key as PKCS#8 DER, whichever of the two PEM forms it came in.
pub fn private_key_pkcs8_der(pem: &str) -> Result<Vec<u8>, PemError> {
    let block = find_key_block(pem)?;
    match block.label {
        "PRIVATE KEY" | "RSA PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => return Err(PemError::Encrypted),
        other => return Err(PemError::Unsupported(other.to_string())),
    }
    let der = block.decode()?;
    if block.label == "PRIVATE KEY" {
        let info = PrivateKeyInfo::from_der(&der).map_err(|_| PemError::Malformed("not a PKCS#8 PrivateKeyInfo"))?;
        if info.algorithm.oid != pkcs1::ALGORITHM_OID {
            return Err(PemError::Malformed("not an RSA key"));
        }
        pkcs1::RsaPrivateKey::from_der(info.private_key)
            .map_err(|_| PemError::Malformed("the PKCS#8 key holds no valid RSAPrivateKey"))?;
        Ok(der)
    } else {
        pkcs1::RsaPrivateKey::from_der(&der).map_err(|_| PemError::Malformed("not a single RSAPrivateKey"))?;
        PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, &der)
            .to_der()
            .map_err(|_| PemError::Malformed("the key is too large to wrap into PKCS#8"))
    }
}

/// The first `BEGIN … PRIVATE KEY` block: its label and its base64 with all whitespace gone.
struct KeyBlock<'a> {
    label: &'a str,
    base64: String,
}

impl KeyBlock<'_> {
    /// Re-wraps the base64 at 64 columns (RFC 7468's strict form) and decodes it.
    fn decode(&self) -> Result<Vec<u8>, PemError> {
        let mut strict = format!("-----BEGIN {}-----\n", self.label);
        for line in self.base64.as_bytes().chunks(pem_rfc7468::BASE64_WRAP_WIDTH) {
            // Chunks of an ASCII string are ASCII.
            strict.push_str(std::str::from_utf8(line).map_err(|_| PemError::Malformed("invalid base64"))?);
            strict.push('\n');
        }
        strict.push_str(&format!("-----END {}-----\n", self.label));
        let (_, der) = pem_rfc7468::decode_vec(strict.as_bytes()).map_err(|e| {
            PemError::Malformed(match e {
                pem_rfc7468::Error::Base64(_) | pem_rfc7468::Error::Length => "invalid base64",
                pem_rfc7468::Error::Label => "invalid PEM label",
                _ => "invalid PEM encoding",
            })
        })?;
        Ok(der)
    }
}

/// Finds the first private-key block, skipping anything before it (text, certificates, public
/// keys). Lines may end in LF, CRLF or CR and carry surrounding whitespace.
fn find_key_block(pem: &str) -> Result<KeyBlock<'_>, PemError> {
    let mut lines = pem.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else { continue };
        if !label.ends_with("PRIVATE KEY") {
            continue;
        }
        let end = format!("-----END {label}-----");
        let mut base64 = String::new();
        for l in lines.by_ref() {
            if l == end {
                if base64.is_empty() {
                    return Err(PemError::Malformed("empty body"));
                }
                return Ok(KeyBlock { label, base64 });
            }
            if l.contains(':') {
                // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`) only appear on
                // legacy passphrase-encrypted keys.
                return Err(PemError::Encrypted);
            }
            base64.extend(l.chars().filter(|c| !c.is_ascii_whitespace()));
        }
        return Err(PemError::Malformed("missing END line"));
    }
    Err(PemError::NoKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hash;
    use rsa::pkcs8::DecodePrivateKey as _;

    const PKCS1: &str = include_str!("../../tests/fixtures/codesigning/keys/private-key.pem");

    #[test]
    fn pkcs1_is_wrapped_into_pkcs8() {
        let der = private_key_pkcs8_der(PKCS1).unwrap();
        // The wrapped key parses back as PKCS#8 and contains the original RSAPrivateKey.
        let block = find_key_block(PKCS1).unwrap();
        assert_eq!(block.label, "RSA PRIVATE KEY");
        let pkcs1 = block.decode().unwrap();
        let info = PrivateKeyInfo::from_der(&der).unwrap();
        assert_eq!(info.private_key, pkcs1.as_slice());
        assert_eq!(info.algorithm, pkcs1::ALGORITHM_ID);
        // The same key as the rsa crate reads from the PKCS#1 original.
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        assert_eq!(
            rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap(),
            rsa::RsaPrivateKey::from_pkcs1_pem(PKCS1).unwrap()
        );
        let b64 = hash::base64_standard(&der);
        let pkcs8_pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        assert_eq!(private_key_pkcs8_der(&pkcs8_pem).unwrap(), der, "PKCS#8 input passes through unchanged");
    }

    #[test]
    fn key_after_a_certificate_with_lone_cr_is_found() {
        let cert = include_str!("../../tests/fixtures/codesigning/certs/certificate.pem");
        let text = format!("{cert}\n{}", PKCS1.replace("\r\n", "\r"));
        assert_eq!(private_key_pkcs8_der(&text), private_key_pkcs8_der(PKCS1));
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
        assert_eq!(
            private_key_pkcs8_der("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"),
            Err(PemError::Unsupported("EC PRIVATE KEY".into()))
        );
        assert_eq!(
            private_key_pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----"),
            Err(PemError::Malformed("invalid base64"))
        );
        assert_eq!(
            private_key_pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----"),
            Err(PemError::Malformed("empty body"))
        );
        assert_eq!(
            private_key_pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\nMAA=\n"),
            Err(PemError::Malformed("missing END line"))
        );
        // Valid base64 and DER, but an empty SEQUENCE is no RSAPrivateKey.
        assert_eq!(
            private_key_pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----"),
            Err(PemError::Malformed("not a single RSAPrivateKey"))
        );
        let truncated: String =
            PKCS1.lines().take(5).chain(["-----END RSA PRIVATE KEY-----"]).collect::<Vec<_>>().join("\n");
        assert!(matches!(private_key_pkcs8_der(&truncated), Err(PemError::Malformed(_))));
        // A public key is not a private key.
        assert_eq!(
            private_key_pkcs8_der(include_str!("../../tests/fixtures/codesigning/keys/public-key.pem")),
            Err(PemError::NoKey)
        );
    }

    #[test]
    fn pkcs8_of_another_algorithm_is_refused() {
        let der = private_key_pkcs8_der(PKCS1).unwrap();
        let mut info = PrivateKeyInfo::from_der(&der).unwrap();
        // id-ecPublicKey (1.2.840.10045.2.1) around the same bytes.
        info.algorithm.oid = der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
        let other = info.to_der().unwrap();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", hash::base64_standard(&other));
        assert_eq!(private_key_pkcs8_der(&pem), Err(PemError::Malformed("not an RSA key")));
        // Trailing bytes after the PrivateKeyInfo are refused, not ignored.
        let mut long = der.clone();
        long.push(0);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", hash::base64_standard(&long));
        assert_eq!(private_key_pkcs8_der(&pem), Err(PemError::Malformed("not a PKCS#8 PrivateKeyInfo")));
    }
}
