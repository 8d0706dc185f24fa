//! The optional server-held signing key (Worker secret CODE_SIGNING_PRIVATE_KEY, PKCS#1 or
//! PKCS#8 PEM), used through WebCrypto. The imported key and recent signatures are kept per
//! isolate, so a signed check costs one RSA operation per distinct body, not one per request.

use super::internal;
use crate::error::ApiError;
use crate::{protocol::hash, protocol::pem};
use js_sys::{Array, Object, Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Crypto, CryptoKey, SubtleCrypto};
use worker::Env;

pub const SECRET: &str = "CODE_SIGNING_PRIVATE_KEY";
const MAX_CACHED_SIGNATURES: usize = 1024;

thread_local! {
    /// (digest of the PEM, imported key); re-imported when the secret changes.
    static KEY: RefCell<Option<([u8; 32], CryptoKey)>> = const { RefCell::new(None) };
    static SIGNATURES: RefCell<HashMap<[u8; 32], String>> = RefCell::new(HashMap::new());
}

/// Padded standard base64 RSASSA-PKCS1-v1_5/SHA-256 signature over `body`, or `None` when the
/// server holds no key.
pub async fn sign(env: &Env, body: &[u8]) -> Result<Option<String>, ApiError> {
    let Some(pem_text) = env.secret(SECRET).ok().map(|s| s.to_string()).filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let pem_digest = hash::sha256(pem_text.as_bytes());
    let mut cache_key = pem_digest;
    for (i, b) in hash::sha256(body).iter().enumerate() {
        cache_key[i] ^= b;
    }
    if let Some(sig) = SIGNATURES.with(|c| c.borrow().get(&cache_key).cloned()) {
        return Ok(Some(sig));
    }
    let key = match KEY.with(|k| k.borrow().as_ref().filter(|(d, _)| *d == pem_digest).map(|(_, key)| key.clone())) {
        Some(key) => key,
        None => {
            let der = pem::private_key_pkcs8_der(&pem_text)
                .map_err(|e| ApiError::internal(format!("{SECRET} is unusable: {e}")))?;
            let key =
                import(&der).await.map_err(|e| ApiError::internal(format!("{SECRET} could not be imported: {e:?}")))?;
            KEY.with(|k| *k.borrow_mut() = Some((pem_digest, key.clone())));
            key
        }
    };
    let sig =
        hash::base64_standard(&rsa_sign(&key, body).await.map_err(|e| internal(format!("signing failed: {e:?}")))?);
    SIGNATURES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CACHED_SIGNATURES {
            c.clear();
        }
        c.insert(cache_key, sig.clone());
    });
    Ok(Some(sig))
}

fn subtle() -> Result<SubtleCrypto, JsValue> {
    let crypto: Crypto = Reflect::get(&js_sys::global(), &"crypto".into())?.dyn_into()?;
    Ok(crypto.subtle())
}

fn algorithm() -> Result<Object, JsValue> {
    let alg = Object::new();
    Reflect::set(&alg, &"name".into(), &"RSASSA-PKCS1-v1_5".into())?;
    Reflect::set(&alg, &"hash".into(), &"SHA-256".into())?;
    Ok(alg)
}

async fn import(pkcs8_der: &[u8]) -> Result<CryptoKey, JsValue> {
    let data: Object = Uint8Array::from(pkcs8_der).into();
    let usages = Array::of1(&"sign".into());
    let promise = subtle()?.import_key_with_object("pkcs8", &data, &algorithm()?, false, &usages)?;
    JsFuture::from(promise).await?.dyn_into()
}

async fn rsa_sign(key: &CryptoKey, body: &[u8]) -> Result<Vec<u8>, JsValue> {
    let data: Object = Uint8Array::from(body).into();
    let promise = subtle()?.sign_with_object_and_buffer_source(&algorithm()?, key, &data)?;
    Ok(Uint8Array::new(&JsFuture::from(promise).await?).to_vec())
}
