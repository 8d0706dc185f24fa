//! After a commit, fetch the manifest endpoint as a device would and prove it serves exactly
//! what was committed: the same bytes, and, when signed, our signature under our keyid (a
//! signature over other bytes, or under a keyid the app does not know, fails on devices).

use crate::commit::{new_update_id, Body, Committed};
use crate::sign::Signature;
use crate::upload::{self, Client};
use anyhow::{anyhow, bail, Context, Result};
use expo_ota::storage::layout::Target;
use expo_ota::{protocol::multipart, protocol::sfv};
use std::time::Duration;

/// Retries while other isolates still serve the previous update: the server caches checks for
/// up to CHECK_CACHE_MS (default 1 s), so a few short retries are normal; a different answer
/// after that is an error.
pub async fn served(client: &Client, target: &Target, channel: Option<&str>, c: &Committed) -> Result<()> {
    let mut headers = request_headers(channel, &c.body, c.signature.as_ref())?;
    // A device inside any staged rollout of this update (a device outside gets the control).
    headers.push(("eas-client-id", inside_client_id(&c.response.id)?));
    let mut last = None;
    for attempt in 0..6 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (ct, body) = client.client_manifest(target, &headers).await?;
        match check_served(&ct, &body, &c.body, c.signature.as_ref()) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried")).with_context(|| format!("verifying {}", upload::label(target)))
}

/// A client id whose rollout bucket for `update_id` is in the first 1 %, so it is inside every
/// rollout percentage (about 100 hashes).
fn inside_client_id(update_id: &str) -> Result<String> {
    use expo_ota::check::rollout::{bucket, inside};
    loop {
        let id = new_update_id()?;
        if inside(bucket(update_id, &id), 1) {
            return Ok(id);
        }
    }
}

/// The headers of a device that would receive `body`: on `channel`, verifying signatures when
/// we signed, and for a directive, running a downloaded update (a device already on its
/// embedded update is told "no update").
fn request_headers(
    channel: Option<&str>,
    body: &Body,
    signature: Option<&Signature>,
) -> Result<Vec<(&'static str, String)>> {
    let mut h = Vec::new();
    if let Some(c) = channel {
        h.push(("expo-channel-name", c.to_string()));
    }
    if let Some(s) = signature {
        let keyid = sfv::string_item(&s.key_id).map_err(|e| anyhow!("key id: {e}"))?;
        h.push(("expo-expect-signature", format!("sig, keyid={keyid}, alg=\"rsa-v1_5-sha256\"")));
    }
    if let Body::Directive(_) = body {
        h.push(("expo-current-update-id", new_update_id()?));
        h.push(("expo-embedded-update-id", new_update_id()?));
    }
    Ok(h)
}

/// The part a protocol-1 device receives must be byte-identical to what was committed, and
/// carry our signature when there is one.
pub fn check_served(content_type: &str, body: &[u8], committed: &Body, signature: Option<&Signature>) -> Result<()> {
    let parts = multipart::parse(content_type, body)
        .map_err(|e| anyhow!("the manifest response is not valid multipart/mixed: {e}"))?;
    let want = committed.part();
    let part = parts.iter().find(|p| p.name().as_deref() == Some(want)).ok_or_else(|| {
        let got: Vec<String> = parts.iter().filter_map(|p| p.name()).collect();
        anyhow!("the server answered without a {want} part (got {})", got.join(", "))
    })?;
    if part.body != committed.as_str().as_bytes() {
        bail!(
            "the {want} served to clients ({} bytes) differs from the one committed ({} bytes); another publish may have raced this one",
            part.body.len(),
            committed.as_str().len()
        );
    }
    let Some(expected) = signature else { return Ok(()) };
    // iOS looks the part header up by its exact lowercase name.
    let header = part.headers.iter().find(|(k, _)| k == "expo-signature").map(|(_, v)| v.as_str());
    let header = header.ok_or_else(|| anyhow!("the {want} was served without an expo-signature header"))?;
    let dict = sfv::parse_dictionary(header)
        .map_err(|e| anyhow!("the served expo-signature {header:?} is not a valid dictionary: {e}"))?;
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.as_str());
    if get("sig") != Some(expected.sig.as_str()) {
        bail!("the {want} is served with a signature other than the one this publish made");
    }
    if get("keyid") != Some(expected.key_id.as_str()) {
        bail!("the {want} is served with keyid {:?}, expected {:?}", get("keyid").unwrap_or(""), expected.key_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expo_ota::protocol::multipart::{render, Part};

    fn sig(s: &str, k: &str) -> Signature {
        Signature { sig: s.into(), key_id: k.into() }
    }

    #[test]
    fn served_manifest_must_match() {
        let m = |s: &str| Body::Manifest(s.into());
        let (ct, body) = render(&[Part::new("manifest", "{\"id\":\"a\"}"), Part::new("extensions", "{}")]);
        assert!(check_served(&ct, &body, &m("{\"id\":\"a\"}"), None).is_ok());
        assert!(check_served(&ct, &body, &m("{\"id\":\"b\"}"), None).unwrap_err().to_string().contains("differs"));
        let (ct, body) = render(&[Part::new("directive", "{\"type\":\"noUpdateAvailable\"}")]);
        assert!(check_served(&ct, &body, &m("{}"), None)
            .unwrap_err()
            .to_string()
            .contains("without a manifest part (got directive)"));
        assert!(check_served("application/json", b"{}", &m("{}"), None).is_err());
    }

    #[test]
    fn served_signature_must_be_ours() {
        let body = Body::Directive("{\"type\":\"rollBackToEmbedded\"}".into());
        let served =
            |header: Option<&str>| render(&[Part::new("directive", body.as_str()).signed(header.map(str::to_string))]);
        let ours = sig("c2ln+/==", "main");
        let (ct, b) = served(Some(&sfv::signature_header("c2ln+/==", "main")));
        assert!(check_served(&ct, &b, &body, Some(&ours)).is_ok());
        // Unsigned answers are fine when nothing was signed, not otherwise.
        assert!(check_served(&ct, &b, &body, None).is_ok());
        let (ct, b) = served(None);
        assert!(check_served(&ct, &b, &body, Some(&ours))
            .unwrap_err()
            .to_string()
            .contains("without an expo-signature"));
        let (ct, b) = served(Some(&sfv::signature_header("b3RoZXI=", "main")));
        assert!(check_served(&ct, &b, &body, Some(&ours)).unwrap_err().to_string().contains("signature other than"));
        let (ct, b) = served(Some(&sfv::signature_header("c2ln+/==", "root")));
        assert!(check_served(&ct, &b, &body, Some(&ours)).unwrap_err().to_string().contains("keyid \"root\""));
        let (ct, b) = served(Some("sig=(1 2)"));
        assert!(check_served(&ct, &b, &body, Some(&ours)).unwrap_err().to_string().contains("not a valid dictionary"));
    }

    #[test]
    fn device_headers() {
        let m = Body::Manifest("{}".into());
        assert!(request_headers(None, &m, None).unwrap().is_empty());
        let h = request_headers(Some("staging"), &m, Some(&sig("x", "main"))).unwrap();
        assert_eq!(
            h,
            [
                ("expo-channel-name", "staging".to_string()),
                ("expo-expect-signature", r#"sig, keyid="main", alg="rsa-v1_5-sha256""#.to_string())
            ]
        );
        // The server parses what we send back to the keyid it signs under.
        assert_eq!(sfv::parse_expect_signature(&h[1].1).unwrap().keyid, "main");
        let h = request_headers(None, &Body::Directive("{}".into()), None).unwrap();
        assert_eq!(
            h.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["expo-current-update-id", "expo-embedded-update-id"]
        );
        assert_ne!(h[0].1, h[1].1, "a device already on its embedded update would get no directive");
    }
}
