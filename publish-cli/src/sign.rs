//! Code signing on the publisher's machine: the private key is read here and only signatures
//! leave it. Expo clients verify RSASSA-PKCS1-v1_5 with SHA-256 over the exact part body, so
//! the signed bytes must be the committed bytes, untouched.

use crate::cli::SigningArgs;
use anyhow::{anyhow, Context, Result};
use expo_ota::{protocol::hash, protocol::pem};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use std::path::Path;

/// A signature as the commit request and the `expo-signature` header carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Padded standard base64.
    pub sig: String,
    pub key_id: String,
}

pub struct Signer {
    key: SigningKey<Sha256>,
    key_id: String,
}

impl Signer {
    /// Accepts PKCS#1 (`BEGIN RSA PRIVATE KEY`, what `expo-updates codesigning:generate` writes)
    /// and PKCS#8 (`BEGIN PRIVATE KEY`). The core's PEM reader is the one the Worker uses, so
    /// a key the server accepts the CLI accepts too, with the same errors for encrypted keys.
    pub fn from_pem(pem_text: &str, key_id: &str) -> Result<Self> {
        let der = pem::private_key_pkcs8_der(pem_text).map_err(|e| anyhow!("{e}"))?;
        let key = RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| anyhow!("not a usable RSA private key: {e}"))?;
        Ok(Self { key: SigningKey::new(key), key_id: key_id.to_string() })
    }

    pub fn load(path: &Path, key_id: &str) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading --private-key {}", path.display()))?;
        Self::from_pem(&text, key_id).with_context(|| format!("--private-key {}", path.display()))
    }

    pub fn sign(&self, body: &[u8]) -> Signature {
        // PKCS#1 v1.5 is deterministic; the RNG only blinds the private-key operation.
        let sig = self.key.sign_with_rng(&mut rsa::rand_core::OsRng, body);
        Signature { sig: hash::base64_standard(&sig.to_bytes()), key_id: self.key_id.clone() }
    }
}

/// The signer `--private-key`/`--key-id` ask for, loaded before any request is sent.
pub fn from_args(args: &SigningArgs) -> Result<Option<Signer>> {
    args.private_key.as_deref().map(|p| Signer::load(p, &args.key_id)).transpose()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::export::tests::fixture;
    use rsa::pkcs1v15::VerifyingKey;
    use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, LineEnding};
    use rsa::signature::Verifier;

    pub fn private_key_path() -> std::path::PathBuf {
        fixture("codesigning").join("keys/private-key.pem")
    }

    /// True when `sig_b64` is a valid signature of `body` under the fixture public key.
    pub fn verifies(body: &[u8], sig_b64: &str) -> bool {
        let public = std::fs::read_to_string(fixture("codesigning").join("keys/public-key.pem")).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(rsa::RsaPublicKey::from_public_key_pem(&public).unwrap());
        let raw = hash::base64_standard_decode(sig_b64).unwrap_or_default();
        rsa::pkcs1v15::Signature::try_from(raw.as_slice()).is_ok_and(|s| verifier.verify(body, &s).is_ok())
    }

    fn kat() -> Vec<(Vec<u8>, String)> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("codesigning").join("signature-kat.json")).unwrap()).unwrap();
        let sig = |i: usize| v[i]["signatureBase64"].as_str().unwrap().to_string();
        assert_eq!(v[0]["input"], "utf8 string \"hello expo-updates\"");
        assert_eq!(v[1]["input"], "demo-app-v1/metadata.json");
        vec![
            (b"hello expo-updates".to_vec(), sig(0)),
            (std::fs::read(fixture("demo-app-v1").join("metadata.json")).unwrap(), sig(1)),
        ]
    }

    #[test]
    fn reproduces_known_answer_signatures() {
        let signer = Signer::load(&private_key_path(), "main").unwrap();
        for (input, expected) in kat() {
            let s = signer.sign(&input);
            assert_eq!(s.sig, expected);
            assert_eq!(s.key_id, "main");
            assert!(verifies(&input, &s.sig));
            assert!(!verifies(b"tampered", &s.sig));
        }
    }

    #[test]
    fn pkcs8_form_of_the_same_key_signs_identically() {
        let pkcs1 = std::fs::read_to_string(private_key_path()).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let key = RsaPrivateKey::from_pkcs8_der(&pem::private_key_pkcs8_der(&pkcs1).unwrap()).unwrap();
        let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let signer = Signer::from_pem(&pkcs8, "k2").unwrap();
        for (input, expected) in kat() {
            assert_eq!(signer.sign(&input), Signature { sig: expected, key_id: "k2".into() });
        }
    }

    #[test]
    fn unusable_keys_fail_clearly() {
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(format!("{:#}", Signer::from_pem(enc, "main").err().unwrap()).contains("encrypted"));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(format!("{:#}", Signer::from_pem(legacy, "main").err().unwrap()).contains("encrypted"));
        let public = std::fs::read_to_string(fixture("codesigning").join("keys/public-key.pem")).unwrap();
        assert!(format!("{:#}", Signer::from_pem(&public, "main").err().unwrap()).contains("no PEM private key"));
        let err = format!("{:#}", Signer::load(Path::new("/nonexistent/key.pem"), "main").err().unwrap());
        assert!(err.contains("--private-key /nonexistent/key.pem"), "{err}");
    }
}
