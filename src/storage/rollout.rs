//! Rollout and halt state as stored. A staged rollout and a halt live in the channel pointer the
//! check already reads (never in the immutable record), so a check stays one read at most and
//! an outside device is answered from the control record embedded here. The pre-signed revert
//! lives in the update's immutable record, where only the app's writer reads it.

use crate::storage::record::UpdateRecord;
use serde::{Deserialize, Serialize};

/// A staged rollout of the pointer's update: devices whose bucket falls under `percentage` get
/// it, the others get `control`. The bucket salt is the rollout update's id (fixed for the
/// rollout's life), so growing the percentage only adds devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// 1..=99; 100 ends the rollout (the pointer then carries no rollout).
    pub percentage: u8,
    /// What the channel served when the rollout started (its own rollout and halt state
    /// stripped); `None` when nothing was served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Box<UpdateRecord>>,
}

/// The pointer serves a revert because `update_id` was halted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Halted {
    pub update_id: String,
    /// ISO 8601 time of the halt.
    pub at: crate::protocol::time::Timestamp,
    pub reason: String,
    /// The update the revert republishes (`None`: the revert is a rollBackToEmbedded). A device
    /// already on it is told "no update" rather than downloading its republished copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_update_id: Option<String>,
}

/// Stored with an update at commit: what a halt of this update goes back to, and, when the
/// publisher signs, the revert body it signed in advance (built and checked by the server; see
/// `deploy::rollout::revert_record`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revert {
    /// What the channel served before this update (`None`: nothing, or a rollBackToEmbedded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_update_id: Option<String>,
    /// The exact revert body (the control republished with `createdAt` = this update's + 1 ms, or
    /// a rollBackToEmbedded directive with that commitTime), signed by the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}
