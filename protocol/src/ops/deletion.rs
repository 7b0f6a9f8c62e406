//! The deletion cascade: `deletion_done` (a service says it deleted a user's data) and
//! `deletion_status` (which services have).

use super::request;
use serde::{Deserialize, Serialize};

/// `deletion_done`: `service` has deleted its data about the deleted user `user_id`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionDoneRequest {
    /// The deleted user (from the `user.deleted` event).
    pub user_id: String,
    /// The acknowledging service, one of those the operator registered.
    pub service: String,
}
request!(DeletionDoneRequest => DeletionDone, DeletionStatusReply);

/// `deletion_status`: a deleted user's cascade.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionStatusRequest {
    /// The deleted user.
    pub user_id: String,
}
request!(DeletionStatusRequest => DeletionStatus, DeletionStatusReply);

/// Where a user's deletion cascade stands.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionStatusReply {
    /// The deleted user.
    pub user_id: String,
    /// When `delete_user` committed (Unix ms).
    pub requested_at: i64,
    /// When the cascade completes whether or not every service acknowledged (Unix ms).
    pub deadline: i64,
    /// The services that acknowledged.
    pub acknowledged: Vec<String>,
    /// The services that have not.
    pub pending: Vec<String>,
    /// When the cascade completed (every service acknowledged, or the deadline passed); absent
    /// while it is still running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::pin;
    use super::*;

    #[test]
    fn deletion_shapes() {
        pin(
            &DeletionDoneRequest {
                user_id: "u1".into(),
                service: "billing".into(),
            },
            r#"{"user_id":"u1","service":"billing"}"#,
        );
        pin(
            &DeletionStatusReply {
                user_id: "u1".into(),
                requested_at: 1,
                deadline: 2,
                acknowledged: vec!["billing".into()],
                pending: vec!["mailer".into()],
                completed_at: None,
            },
            r#"{"user_id":"u1","requested_at":1,"deadline":2,"acknowledged":["billing"],"pending":["mailer"]}"#,
        );
    }
}
