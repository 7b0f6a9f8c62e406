//! The deletion cascade (default tube `account`): `deletion_done`, `deletion_status`, and the
//! completion of cascades whose deadline passed.
//!
//! `delete_user` publishes `user.deleted` naming the services the operator registered
//! (`--deletion-service`); each acknowledges with `deletion_done` once it has deleted its data;
//! when all have, or when the deadline passes, `user.deletion_completed` follows, naming the
//! services that never acknowledged.

use super::Call;
use crate::error::HandlerError;
use crate::events::EventSink;
use crate::store::{DeletionAck, DeletionRecord, StoreError, Tx};
use authq_protocol::events::{EventBody, UserDeletionCompleted};
use authq_protocol::ops::{DeletionDoneRequest, DeletionStatusReply, DeletionStatusRequest};
use std::sync::Arc;

/// `deletion_done`: records a service's receipt; completes the cascade when it was the last.
pub async fn deletion_done(
    ctx: &Call<'_>,
    req: DeletionDoneRequest,
) -> Result<DeletionStatusReply, HandlerError> {
    let (events, now) = (Arc::clone(&ctx.events), ctx.now());
    ctx.commit(
        move |s| {
            let ack = s.acknowledge_deletion(&req.user_id, &req.service, now)?;
            if let DeletionAck::Recorded(record) = &ack
                && record.pending.is_empty()
                && record.completed_at.is_none()
            {
                complete(s, &events, record, now)?;
                return s.deletion(&req.user_id).map(|d| match d {
                    Some(d) => DeletionAck::Recorded(d),
                    None => DeletionAck::NoDeletion,
                });
            }
            Ok(ack)
        },
        |ack| match ack {
            DeletionAck::Recorded(record) => Ok(reply(record)),
            DeletionAck::NoDeletion => Err(HandlerError::NotFound),
            DeletionAck::UnknownService => Err(HandlerError::bad_request(
                "`service` is not one of the services the deletion waits for",
            )),
        },
    )
    .await
}

/// `deletion_status`: which services have acknowledged a user's deletion.
pub async fn deletion_status(
    ctx: &Call<'_>,
    req: DeletionStatusRequest,
) -> Result<DeletionStatusReply, HandlerError> {
    let record = ctx
        .read(move |s| s.deletion(&req.user_id))
        .await?
        .ok_or(HandlerError::NotFound)?;
    Ok(reply(record))
}

/// Completes every cascade whose deadline passed, naming the services that did not
/// acknowledge. Returns how many it completed.
pub fn complete_overdue(
    tx: &mut Tx<'_>,
    events: &EventSink,
    now: i64,
) -> Result<usize, StoreError> {
    let overdue = tx.overdue_deletions(now)?;
    for record in &overdue {
        complete(tx, events, record, now)?;
    }
    Ok(overdue.len())
}

fn complete(
    tx: &mut Tx<'_>,
    events: &EventSink,
    record: &DeletionRecord,
    now: i64,
) -> Result<(), StoreError> {
    if tx.complete_deletion(&record.user_id, now)? {
        let body = EventBody::UserDeletionCompleted(UserDeletionCompleted {
            user_id: record.user_id.clone(),
            services: record.acknowledged.clone(),
            missing: record.pending.clone(),
        });
        events.record(tx, body, now)?;
    }
    Ok(())
}

fn reply(record: DeletionRecord) -> DeletionStatusReply {
    DeletionStatusReply {
        user_id: record.user_id,
        requested_at: record.requested_at,
        deadline: record.deadline,
        acknowledged: record.acknowledged,
        pending: record.pending,
        completed_at: record.completed_at,
    }
}
