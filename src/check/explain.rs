//! `explain`: what a device would get from a check and why, in words. It parses its query into
//! the same `ManifestRequest` a check builds and asks the same [`decide_explained`], so an
//! explanation cannot disagree with the check; this module only describes the decision.

use super::{decide_explained, parse_request, ManifestRequest, Outcome};
use crate::error::ApiError;
use crate::http::route::query_param;
use crate::storage::record::{RecordKind, UpdateRecord};
use serde::{Deserialize, Serialize};

/// `GET /api/explain?slug=&platform=&runtimeVersion=&channel=&clientId=&currentUpdateId=&embeddedUpdateId=&protocolVersion=`:
/// each parameter stands for the header a device would send (protocol version 1 by default).
pub fn request_from_query(query: &str) -> Result<ManifestRequest, ApiError> {
    let header = |name: &str| -> Option<String> {
        let param = match name {
            "expo-platform" => "platform",
            "expo-runtime-version" => "runtimeVersion",
            "expo-channel-name" => "channel",
            "eas-client-id" => "clientId",
            "expo-current-update-id" => "currentUpdateId",
            "expo-embedded-update-id" => "embeddedUpdateId",
            "expo-protocol-version" => {
                return Some(query_param(query, "protocolVersion").unwrap_or_else(|| "1".into()))
            }
            _ => return None,
        };
        query_param(query, param).filter(|v| !v.is_empty())
    };
    parse_request(query, &header)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub slug: String,
    pub platform: String,
    pub runtime_version: String,
    pub channel: String,
    /// What the channel pointer serves (`None`: nothing published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<ExplainedRollout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<crate::storage::rollout::Halted>,
    /// `update`, `rollBackToEmbedded`, `noUpdate` or `notFound` (protocol 0 with nothing to serve).
    pub answer: String,
    /// The update id served (for `update` and `rollBackToEmbedded`, the record's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    /// The decision in words, in the order it was made.
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainedRollout {
    pub update_id: String,
    pub percentage: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_update_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The device's bucket as a fraction of 1 (inside when below percentage / 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<f64>,
    pub inside: bool,
}

/// Explains the answer `pointer` (the channel's pointer record) gives `req`.
pub fn explain(req: &ManifestRequest, client_id_sent: bool, pointer: Option<&UpdateRecord>) -> Explanation {
    let d = decide_explained(req, pointer);
    let mut reasons = Vec::new();
    let t = &req.target;
    match pointer {
        None => reasons.push(format!(
            "nothing is published for {} {} runtimeVersion {} on channel {:?}",
            t.slug,
            t.platform,
            t.runtime_version,
            req.channel.as_str()
        )),
        Some(p) => reasons.push(format!(
            "channel {:?} of {} {} runtimeVersion {} serves {} {}",
            req.channel.as_str(),
            t.slug,
            t.platform,
            t.runtime_version,
            if p.kind == RecordKind::RollBackToEmbedded { "a rollBackToEmbedded directive" } else { "update" },
            p.id
        )),
    }
    if client_id_sent && req.client_id.is_none() {
        reasons.push("the client id is not a UUID: the device counts as sending none".into());
    }
    let rollout = pointer.and_then(|p| Some((p, p.rollout.as_ref()?))).map(|(p, r)| {
        let placement = d.rollout.expect("a rollout pointer places the device");
        let control = r.control.as_ref().map(|c| c.id.clone());
        reasons.push(match placement.bucket {
            None => format!(
                "update {} is rolling out to {} % of devices; without an eas-client-id the device is outside",
                p.id, r.percentage
            ),
            Some(b) => format!(
                "update {} is rolling out to {} % of devices; this device's bucket is {:.4} ({} % mark {:.4}): {}",
                p.id,
                r.percentage,
                super::rollout::fraction(b),
                r.percentage,
                f64::from(r.percentage) / 100.0,
                if placement.inside { "inside" } else { "outside" }
            ),
        });
        if !placement.inside {
            reasons.push(match &control {
                Some(c) => format!("outside the rollout the device is answered with the control update {c}"),
                None => "outside the rollout and nothing was served before it: no update".into(),
            });
        }
        ExplainedRollout {
            update_id: p.id.clone(),
            percentage: r.percentage,
            control_update_id: control,
            client_id: req.client_id.clone(),
            bucket: placement.bucket.map(super::rollout::fraction),
            inside: placement.inside,
        }
    });
    let halted = pointer.and_then(|p| p.halted.as_deref().cloned());
    if let Some(h) = &halted {
        reasons.push(format!(
            "update {} was halted at {} ({}); the channel serves {}",
            h.update_id,
            h.at,
            h.reason,
            match &h.control_update_id {
                Some(c) => format!("a republish of {c}"),
                None => "a rollBackToEmbedded directive".into(),
            }
        ));
        if d.on_halt_control {
            reasons.push("the device already runs the update the halt went back to: no update".into());
        }
    }
    let (answer, update_id) = match &d.outcome {
        Outcome::Serve(r) if r.kind == RecordKind::RollBackToEmbedded => ("rollBackToEmbedded", Some(r.id.clone())),
        Outcome::Serve(r) => ("update", Some(r.id.clone())),
        Outcome::NoUpdate => ("noUpdate", None),
        Outcome::NothingForV0 => ("notFound", None),
    };
    reasons.push(match &d.outcome {
        Outcome::Serve(r) if r.kind == RecordKind::RollBackToEmbedded => {
            "answer: roll back to the embedded update".to_string()
        }
        Outcome::Serve(r) => format!("answer: update {} (created {})", r.id, r.created_at),
        Outcome::NoUpdate if req.current_update_id.is_some() && !d.on_halt_control && pointer.is_some() => {
            "answer: no update (the device already runs what it would be served)".into()
        }
        Outcome::NoUpdate => "answer: no update".into(),
        Outcome::NothingForV0 => "answer: 404 (protocol 0 has no way to say \"no update\")".into(),
    });
    Explanation {
        slug: t.slug.to_string(),
        platform: t.platform.to_string(),
        runtime_version: t.runtime_version.to_string(),
        channel: req.channel.to_string(),
        serving: pointer.map(|p| p.id.clone()),
        rollout,
        halted,
        answer: answer.into(),
        update_id,
        reasons,
    }
}
