//! JSON bodies of the deploy API, shared by the Worker and the CLI.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// SHA-256 hex of every file the update will name.
    pub files: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareResponse {
    /// The subset of `files` the server does not have yet.
    pub missing: Vec<String>,
    /// Asset URLs must be `<assetBaseUrl>/<sha256 hex>`.
    pub asset_base_url: String,
    /// The newest createdAt already published for this runtime; a new update must be later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_created_at: Option<String>,
    pub max_file_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadResponse {
    pub sha256: String,
    pub size: u64,
    /// False when the server already had the file (nothing was written).
    pub stored: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest {
    /// The exact manifest body clients will receive; or empty when `directive` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    /// A `rollBackToEmbedded` directive body instead of a manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
    /// Padded standard base64 RSASSA-PKCS1-v1_5/SHA-256 signature over the exact body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The update this one republishes, for history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitResponse {
    pub id: String,
    pub created_at: String,
    pub kind: crate::storage::record::RecordKind,
    pub slug: String,
    pub platform: String,
    pub runtime_version: String,
    pub channel: String,
    pub launch_asset_bytes: u64,
    pub file_count: u32,
    pub total_bytes: u64,
    #[serde(default)]
    pub signed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormPublishResponse {
    pub updates: Vec<CommitResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    pub slug: String,
    pub runtimes: Vec<RuntimeUpdates>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeUpdates {
    pub platform: String,
    pub runtime_version: String,
    pub updates: Vec<UpdateSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSummary {
    pub id: String,
    pub created_at: String,
    pub channel: String,
    pub kind: crate::storage::record::RecordKind,
    /// True when this update is what its channel serves now.
    pub current: bool,
    pub signed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
    pub launch_asset_bytes: u64,
    pub file_count: u32,
    pub total_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResponse {
    pub deleted_objects: u64,
}

/// `DELETE /api/updates/:slug/:platform/:runtimeVersion/:id`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteUpdateResponse {
    pub deleted: String,
    /// Files no remaining update named, removed with it.
    pub deleted_files: u64,
    /// When the deleted update was current: what its channel serves now (the previous update
    /// republished, or a rollBackToEmbedded directive when none was left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<CommitResponse>,
}
