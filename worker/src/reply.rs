//! Publishing what the worker sends back: replies, and copies to the dead-letter exchange.
//!
//! A reply is published on the channel the request was delivered on, before the request is
//! acknowledged on that same channel. AMQP keeps a channel's frames in order, so the broker
//! has the reply before it sees the acknowledgement: a crash between the two redelivers the
//! request (at-least-once), it never loses the reply of an acknowledged request.

use authq_protocol::CONTENT_TYPE;
use authq_protocol::Names;
use authq_protocol::names::{DeadLetterReason, headers};
use authq_protocol::notice;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

/// Publishes a reply body to the caller's `reply_to` through the default exchange, with the
/// request's `correlation_id`, and [`headers::REFUSALS_RETURNED`] when `refusals_returned`
/// (`Config::refusals_returned`).
pub async fn publish_reply(
    channel: &Channel,
    reply_to: &ShortString,
    correlation_id: Option<&ShortString>,
    body: &[u8],
    refusals_returned: bool,
) -> lapin::Result<()> {
    let mut properties = BasicProperties::default().with_content_type(CONTENT_TYPE.into());
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id.clone());
    }
    if refusals_returned {
        let mut table = FieldTable::default();
        table.insert(headers::REFUSALS_RETURNED.into(), AMQPValue::Boolean(true));
        properties = properties.with_headers(table);
    }
    channel
        .basic_publish(
            "".into(),
            reply_to.clone(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?;
    Ok(())
}

/// Answers a request a full tube refused: an [`authq_protocol::notice::REFUSED`] reply to
/// `reply_to` with the request's `correlation_id` (see [`refused_by_full_tube`]).
pub async fn publish_refusal(
    channel: &Channel,
    reply_to: &ShortString,
    correlation_id: &ShortString,
) -> lapin::Result<()> {
    let properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_type(notice::REFUSED.into())
        .with_correlation_id(correlation_id.clone());
    channel
        .basic_publish(
            "".into(),
            reply_to.clone(),
            BasicPublishOptions::default(),
            notice::REFUSED_BODY,
            properties,
        )
        .await?;
    Ok(())
}

/// Whether a dead letter is a request that a full tube refused (`x-first-death-reason`
/// `maxlen`: only a classic tube's `reject-publish-dlx` dead-letters for it here; the
/// quarantine and dead-letter queues drop their oldest without dead-lettering).
pub fn refused_by_full_tube(headers_table: Option<&FieldTable>) -> bool {
    matches!(
        headers_table.and_then(|t| t.inner().get("x-first-death-reason")),
        Some(AMQPValue::LongString(reason)) if reason.as_bytes() == b"maxlen"
    )
}

/// Publishes a copy of `delivery` to the dead-letter exchange, with headers saying why and
/// which routing key it came with, its secret fields redacted ([`crate::redact`]). The caller
/// acknowledges the original afterwards.
pub async fn dead_letter(
    channel: &Channel,
    names: &Names,
    delivery: &Delivery,
    reason: DeadLetterReason,
) -> lapin::Result<()> {
    let mut table = delivery.properties.headers().clone().unwrap_or_default();
    table.insert(
        headers::DEAD_LETTER_REASON.into(),
        AMQPValue::LongString(LongString::from(reason.as_str())),
    );
    table.insert(
        headers::ORIGINAL_ROUTING_KEY.into(),
        AMQPValue::LongString(LongString::from(delivery.routing_key.as_str())),
    );
    let properties = dead_letter_properties(&delivery.properties, table);
    channel
        .basic_publish(
            names.dead_letter().into(),
            delivery.routing_key.clone(),
            BasicPublishOptions::default(),
            &crate::redact::redact_body(&delivery.data),
            properties,
        )
        .await?;
    Ok(())
}

/// The properties of a dead letter: the request's, with `headers`, except `user_id` (kept in
/// the [`headers::ORIGINAL_USER_ID`] header: RabbitMQ refuses a publish whose `user_id` is not
/// the publishing connection's user, so copying a caller's would close the worker's channel and
/// redeliver the request in a loop), `expiration` (a dead letter must not expire on its way to
/// the queue) and `cluster_id`.
fn dead_letter_properties(props: &BasicProperties, mut table: FieldTable) -> BasicProperties {
    if let Some(user) = props.user_id() {
        table.insert(
            headers::ORIGINAL_USER_ID.into(),
            AMQPValue::LongString(LongString::from(user.as_str())),
        );
    }
    let mut out = BasicProperties::default().with_headers(table);
    if let Some(v) = props.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = props.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = props.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = props.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = props.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = props.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = props.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = props.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = props.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = props.app_id() {
        out = out.with_app_id(v.clone());
    }
    out
}

/// Why the broker dead-lettered a message (its `x-first-death-reason` header).
pub fn broker_death_reason(headers_table: Option<&FieldTable>) -> DeadLetterReason {
    let reason = headers_table
        .and_then(|t| t.inner().get("x-first-death-reason"))
        .and_then(|v| match v {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        });
    DeadLetterReason::from_broker(reason)
}

/// Reads the absolute deadline header (Unix ms) if present and an integer.
pub fn deadline(headers_table: Option<&FieldTable>) -> Option<i64> {
    let value = headers_table?.inner().get(headers::DEADLINE)?;
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_read_from_any_integer_encoding() {
        let mut t = FieldTable::default();
        assert_eq!(deadline(Some(&t)), None);
        t.insert(
            headers::DEADLINE.into(),
            AMQPValue::LongLongInt(1_700_000_000_000),
        );
        assert_eq!(deadline(Some(&t)), Some(1_700_000_000_000));
        t.insert(
            headers::DEADLINE.into(),
            AMQPValue::LongString("1700000000001".into()),
        );
        assert_eq!(deadline(Some(&t)), Some(1_700_000_000_001));
        t.insert(headers::DEADLINE.into(), AMQPValue::Boolean(true));
        assert_eq!(deadline(Some(&t)), None);
        assert_eq!(deadline(None), None);
    }

    #[test]
    fn only_a_full_tube_s_dead_letter_counts_as_a_refusal() {
        let mut t = FieldTable::default();
        assert!(!refused_by_full_tube(None));
        assert!(!refused_by_full_tube(Some(&t)));
        for (reason, refused) in [("maxlen", true), ("expired", false), ("rejected", false)] {
            t.insert(
                "x-first-death-reason".into(),
                AMQPValue::LongString(reason.into()),
            );
            assert_eq!(refused_by_full_tube(Some(&t)), refused, "{reason}");
        }
    }
}
