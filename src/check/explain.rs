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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rollout::Rollout;

    fn record(id: &str) -> UpdateRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "createdAt": "2024-05-01T12:34:56.789Z", "slug": "demo-app", "platform": "ios",
            "runtimeVersion": "1.0.3", "channel": "production", "body": "{}", "launchAssetBytes": 1,
            "fileCount": 1, "totalBytes": 1, "files": []
        }))
        .unwrap()
    }
    const V1: &str = "0f8d2a8e-0000-4000-8000-000000000001";
    const V2: &str = "0f8d2a8e-0000-4000-8000-000000000002";

    #[test]
    fn explain_outside_device_names_bucket_control_and_answer() {
        let mut p = record(V2);
        p.rollout = Some(Box::new(Rollout { percentage: 1, control: Some(Box::new(record(V1))) }));
        // A device whose bucket is above 1 %.
        let client = (0u32..)
            .map(|i| crate::protocol::id::uuid_v4([i as u8, (i >> 8) as u8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]))
            .find(|c| !super::super::rollout::inside(super::super::rollout::bucket(V2, c), 1))
            .unwrap();
        let q = format!("slug=demo-app&platform=ios&runtimeVersion=1.0.3&clientId={}", client.to_uppercase());
        let e = explain(&request_from_query(&q).unwrap(), true, Some(&p));
        assert_eq!((e.answer.as_str(), e.update_id.as_deref()), ("update", Some(V1)));
        let r = e.rollout.as_ref().unwrap();
        assert_eq!((r.inside, r.percentage, r.client_id.as_deref()), (false, 1, Some(client.as_str())));
        assert!(r.bucket_basis_points.unwrap() >= 100);
        let words = e.reasons().join("\n");
        assert!(words.contains("rolling out to 1 % of devices"), "{words}");
        assert!(words.contains(&format!("control update {V1}")), "{words}");
        assert!(words.ends_with(&format!("answer: update {V1} (created 2024-05-01T12:34:56.789Z)")), "{words}");
        // A client id that is not a UUID is said so, and the device is outside.
        let e = explain(&request_from_query(&format!("{q}x")).unwrap(), true, Some(&p));
        assert!(e.client_id_invalid && e.reasons()[1].contains("not a UUID"));
        assert_eq!(e.rollout.unwrap().bucket_basis_points, None);
    }

    #[test]
    fn explain_nothing_published_is_no_update_and_protocol_0_is_404() {
        let q = "slug=demo-app&platform=android&runtimeVersion=1.0.3&channel=beta";
        let e = explain(&request_from_query(q).unwrap(), false, None);
        assert_eq!((e.answer.as_str(), e.channel.as_str()), ("noUpdate", "beta"));
        assert!(e.reasons()[0].starts_with("nothing is published for demo-app android runtimeVersion 1.0.3"));
        let e = explain(&request_from_query(&format!("{q}&protocolVersion=0")).unwrap(), false, None);
        assert_eq!(e.answer, "notFound");
        assert!(request_from_query("platform=ios&runtimeVersion=1").is_err(), "slug is required");
    }
}
