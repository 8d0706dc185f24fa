//! The immutable record of one published update or rollback. The body is stored exactly as
//! served (and as signed), so a check is one small read and never re-renders anything.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordKind {
    /// `body` is a manifest.
    #[default]
    Update,
    /// `body` is a `rollBackToEmbedded` directive; `createdAt` is its commitTime.
    RollBackToEmbedded,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Update => "update",
            RecordKind::RollBackToEmbedded => "rollBackToEmbedded",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRecord {
    pub id: String,
    pub created_at: crate::protocol::time::Timestamp,
    pub slug: String,
    pub platform: String,
    pub runtime_version: String,
    pub channel: String,
    #[serde(default)]
    pub kind: RecordKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The update this one republishes (rollback, promote, delete-promotes-previous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
    /// The exact part body clients receive (manifest or directive).
    pub body: String,
    /// Padded standard base64 RSA signature over `body`, made by the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub launch_asset_bytes: u64,
    pub file_count: u32,
    pub total_bytes: u64,
    /// SHA-256 hex of every file the manifest names.
    pub files: Vec<String>,
    /// Channel pointer only: the staged rollout of this update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Box<crate::storage::rollout::Rollout>>,
    /// Channel pointer only: this update is a revert serving because another one was halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Box<crate::storage::rollout::Halted>>,
    /// Record only: what a halt of this update goes back to (and its pre-signed body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<Box<crate::storage::rollout::Revert>>,
}

impl UpdateRecord {
    /// The record without channel-pointer state or its revert: what a copy (a control, a
    /// republish) starts from.
    pub fn plain(mut self) -> Self {
        self.rollout = None;
        self.halted = None;
        self.revert = None;
        self
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("record serializes")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::error::ApiError> {
        serde_json::from_slice(bytes)
            .map_err(|e| crate::error::ApiError::internal(format!("corrupt update record: {e}")))
    }
}
