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
    pub latest_created_at: Option<crate::protocol::time::Timestamp>,
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
    /// Start a staged rollout at this percentage (1-99; 100 is a plain publish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percentage: Option<u8>,
    /// Answer the revert body to sign (200, nothing written) instead of committing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepare_revert: bool,
    /// The revert body `prepareRevert` answered, and the publisher's signature over it (same
    /// `keyId`): served if this update is halted, so a halt needs no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_signature: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitResponse {
    pub id: String,
    pub created_at: crate::protocol::time::Timestamp,
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
    pub created_at: crate::protocol::time::Timestamp,
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

/// The publisher's signature over a body the server built (rollback, promote). With
/// `prepareOnly` the server answers the exact body to sign ([`ToSign`]) and writes nothing; the
/// second call sends that `body` back with its `signature`, and the server accepts it only if it
/// is byte for byte what it builds itself from the stored record with the body's id and
/// createdAt — so a signature can never carry new bytes or new metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedBody {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepare_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// `POST /api/updates/:slug/:platform/:runtimeVersion/rollback` (scope `rollback`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    /// Default `production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// An update id of this runtime, `"embedded"`, or absent: what the channel served before
    /// the update its current one republishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The update id the caller saw current; 409 when the channel serves something else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(flatten)]
    pub signed: SignedBody,
}

/// `POST /api/updates/:slug/:platform/:runtimeVersion/promote` (scope `rollback`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteRequest {
    /// The update to promote; or `fromChannel` to promote what that channel serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_channel: Option<String>,
    pub to_channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(flatten)]
    pub signed: SignedBody,
}

/// The body a rollback or promote would install, for the publisher to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToSign {
    pub body: String,
    pub kind: crate::storage::record::RecordKind,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
    /// What the channel served when this body was built: send it back as `expectedCurrent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

/// What a rollback or promote did: installed, or (prepareOnly) what it would install. Over HTTP
/// the inner value is the body; this tagged form only travels between the Worker and the app's
/// writer (externally tagged: the cheapest serde representation in code size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseResponse {
    Installed(CommitResponse),
    ToSign(ToSign),
}
