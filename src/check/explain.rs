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
    pub serving_kind: Option<RecordKind>,
    /// The update the device said it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_update_id: Option<String>,
    /// A `clientId` was given but is not a UUID (the device counts as sending none).
    #[serde(default)]
    pub client_id_invalid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<ExplainedRollout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<crate::storage::rollout::Halted>,
    /// The device was told "no update" because it runs what the halt went back to.
    #[serde(default)]
    pub on_halt_control: bool,
    /// `update`, `rollBackToEmbedded`, `noUpdate` or `notFound` (protocol 0 with nothing to serve).
    pub answer: String,
    /// The update id served (for `update` and `rollBackToEmbedded`, the record's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<crate::protocol::time::Timestamp>,
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
    /// The device's bucket in basis points, 0..=9999 (inside when below percentage × 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_basis_points: Option<u16>,
    pub inside: bool,
}

/// Explains the answer `pointer` (the channel's pointer record) gives `req`. Structured only:
/// the words ([`Explanation::reasons`]) are made by whoever prints them (the CLI), which keeps
/// the formatting out of the Worker.
pub fn explain(req: &ManifestRequest, client_id_sent: bool, pointer: Option<&UpdateRecord>) -> Explanation {
    let d = decide_explained(req, pointer);
    let t = &req.target;
    let rollout = pointer.and_then(|p| Some((p, p.rollout.as_ref()?))).map(|(p, r)| {
        let placement = d.rollout.expect("a rollout pointer places the device");
        ExplainedRollout {
            update_id: p.id.clone(),
            percentage: r.percentage,
            control_update_id: r.control.as_ref().map(|c| c.id.clone()),
            client_id: req.client_id.clone(),
            bucket_basis_points: placement.bucket.map(super::rollout::basis_points),
            inside: placement.inside,
        }
    });
    let (answer, served) = match &d.outcome {
        Outcome::Serve(r) if r.kind == RecordKind::RollBackToEmbedded => ("rollBackToEmbedded", Some(*r)),
        Outcome::Serve(r) => ("update", Some(*r)),
        Outcome::NoUpdate => ("noUpdate", None),
        Outcome::NothingForV0 => ("notFound", None),
    };
    Explanation {
        slug: t.slug.to_string(),
        platform: t.platform.to_string(),
        runtime_version: t.runtime_version.to_string(),
        channel: req.channel.to_string(),
        serving: pointer.map(|p| p.id.clone()),
        serving_kind: pointer.map(|p| p.kind),
        current_update_id: req.current_update_id.clone(),
        client_id_invalid: client_id_sent && req.client_id.is_none(),
        rollout,
        halted: pointer.and_then(|p| p.halted.as_deref().cloned()),
        on_halt_control: d.on_halt_control,
        answer: answer.into(),
        update_id: served.map(|r| r.id.clone()),
        created_at: served.map(|r| r.created_at),
    }
}

impl Explanation {
    /// The decision in words, in the order it was made.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        let where_ = format!("{} {} runtimeVersion {}", self.slug, self.platform, self.runtime_version);
        out.push(match (&self.serving, self.serving_kind) {
            (None, _) => format!("nothing is published for {where_} on channel {:?}", self.channel),
            (Some(id), Some(RecordKind::RollBackToEmbedded)) => {
                format!("channel {:?} of {where_} serves a rollBackToEmbedded directive ({id})", self.channel)
            }
            (Some(id), _) => format!("channel {:?} of {where_} serves update {id}", self.channel),
        });
        if self.client_id_invalid {
            out.push("the client id is not a UUID: the device counts as sending none".into());
        }
        if let Some(r) = &self.rollout {
            out.push(match r.bucket_basis_points {
                None => format!(
                    "update {} is rolling out to {} % of devices; without an eas-client-id the device is outside",
                    r.update_id, r.percentage
                ),
                Some(bp) => format!(
                    "update {} is rolling out to {} % of devices; this device's bucket is {}.{:02} %: {}",
                    r.update_id,
                    r.percentage,
                    bp / 100,
                    bp % 100,
                    if r.inside { "inside" } else { "outside" }
                ),
            });
            if !r.inside {
                out.push(match &r.control_update_id {
                    Some(c) => format!("outside the rollout the device is answered with the control update {c}"),
                    None => "outside the rollout, and nothing was served before it".into(),
                });
            }
        }
        if let Some(h) = &self.halted {
            out.push(format!(
                "update {} was halted at {} ({}); the channel serves {}",
                h.update_id,
                h.at,
                h.reason,
                match &h.control_update_id {
                    Some(c) => format!("a republish of {c}"),
                    None => "a rollBackToEmbedded directive".into(),
                }
            ));
            if self.on_halt_control {
                out.push("the device already runs the update the halt went back to".into());
            }
        }
        out.push(match (self.answer.as_str(), &self.update_id) {
            ("rollBackToEmbedded", _) => "answer: roll back to the embedded update".to_string(),
            ("update", Some(id)) => match self.created_at {
                Some(at) => format!("answer: update {id} (created {at})"),
                None => format!("answer: update {id}"),
            },
            ("noUpdate", _) if self.current_update_id.is_some() && self.serving.is_some() && !self.on_halt_control => {
                "answer: no update (the device already runs what it would be served)".into()
            }
            ("notFound", _) => "answer: 404 (protocol 0 has no way to say \"no update\")".into(),
            _ => "answer: no update".into(),
        });
        out
    }
}
