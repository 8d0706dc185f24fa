//! Making a rendered body current: a createdAt after everything published for the runtime, the
//! signature over the exact bytes, and one retry when another publish landed in between. Only
//! `publish` commits: republishing a stored update (rollback, promote, re-signing after a
//! delete) is the server's `…/rollback` and `…/promote`, and the commit route refuses
//! `republishedFrom`.

use crate::sign::{Signature, Signer};
use crate::upload::{self, Client};
use anyhow::{anyhow, bail, Result};
use expo_ota::deploy::api::{CommitRequest, CommitResponse, PrepareResponse};
use expo_ota::storage::layout::Target;
use expo_ota::{protocol::id, protocol::time};

/// What clients will receive, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Manifest(String),
    /// A `rollBackToEmbedded` directive.
    Directive(String),
}

impl Body {
    /// The multipart part it is served as.
    pub fn part(&self) -> &'static str {
        match self {
            Body::Manifest(_) => "manifest",
            Body::Directive(_) => "directive",
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Body::Manifest(s) | Body::Directive(s) => s,
        }
    }
}

/// Everything a commit carries besides the body and its signature.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub channel: Option<String>,
    pub message: Option<String>,
    pub git_commit: Option<String>,
    /// Start a staged rollout at this percentage (`--rollout-percentage`).
    pub rollout_percentage: Option<u8>,
}

#[derive(Clone, Debug)]
pub struct Committed {
    pub response: CommitResponse,
    pub body: Body,
    pub signature: Option<Signature>,
}

/// Commits the body `render(prepare, createdAtMs)` makes. On 409 (an update with a later
/// createdAt, or another commit to the channel, landed meanwhile) re-prepares `files` once for
/// the new latestCreatedAt and commits a freshly rendered, freshly signed body.
pub async fn commit(
    client: &Client,
    target: &Target,
    files: &[String],
    mut prep: PrepareResponse,
    signer: Option<&Signer>,
    meta: &Meta,
    mut render: impl FnMut(&PrepareResponse, u64) -> Result<Body>,
) -> Result<Committed> {
    for attempt in 0..2 {
        let body = render(&prep, created_at_ms(now_ms(), prep.latest_created_at))?;
        let signature = signer.map(|s| s.sign(body.as_str().as_bytes()));
        let (manifest, directive) = match &body {
            Body::Manifest(m) => (m.clone(), None),
            Body::Directive(d) => (String::new(), Some(d.clone())),
        };
        let mut req = CommitRequest {
            manifest,
            directive,
            signature: signature.as_ref().map(|s| s.sig.clone()),
            key_id: signature.as_ref().map(|s| s.key_id.clone()),
            republished_from: None,
            channel: meta.channel.clone(),
            message: meta.message.clone(),
            git_commit: meta.git_commit.clone(),
            rollout_percentage: meta.rollout_percentage,
            prepare_revert: false,
            revert_body: None,
            revert_signature: None,
        };
        if let (Some(signer), Body::Manifest(_)) = (signer, &body) {
            // Sign now what a halt of this update will serve: the server cannot sign it later.
            let to_sign = client.prepare_revert(target, &CommitRequest { prepare_revert: true, ..req.clone() }).await?;
            req.revert_signature = Some(signer.sign(to_sign.body.as_bytes()).sig);
            req.revert_body = Some(to_sign.body);
        }
        match client.commit(target, &req).await {
            Ok(response) => return Ok(Committed { response, body, signature }),
            Err(e) if attempt == 0 && upload::status_of(&e) == Some(409) => {
                prep = client.prepare(target, files.to_vec()).await?;
                if !prep.missing.is_empty() {
                    bail!(
                        "{e:#}; and {} file(s) disappeared from the server meanwhile, run the command again",
                        prep.missing.len()
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("second attempt returns")
}

/// Clients only take a strictly newer update, so createdAt must pass the latest one published.
pub fn created_at_ms(now_ms: u64, latest: Option<time::Timestamp>) -> u64 {
    expo_ota::deploy::service::next_created_ms(now_ms, latest.map(time::Timestamp::millis))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn random_bytes() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| anyhow!("no OS randomness for an update id: {e}"))?;
    Ok(b)
}

pub fn new_update_id() -> Result<String> {
    Ok(id::uuid_v4(random_bytes()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_is_after_latest() {
        assert_eq!(created_at_ms(1_000, None), 1_000);
        let at = |s: &str| time::Timestamp::parse(s);
        assert_eq!(created_at_ms(1_000, at("1970-01-01T00:00:00.500Z")), 1_000);
        // A clock behind the last publish still produces a strictly newer update.
        assert_eq!(created_at_ms(1_000, at("1970-01-01T00:00:05.000Z")), 5_001);
        assert!(at("garbage").is_none(), "a server's garbage never becomes a Timestamp");
    }

    #[test]
    fn ids_are_canonical_and_fresh() {
        let (a, b) = (new_update_id().unwrap(), new_update_id().unwrap());
        assert!(id::is_canonical_uuid(&a) && a != b);
    }
}
