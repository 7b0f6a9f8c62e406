//! Publishing what the worker sends back: replies, and copies to the dead-letter exchange.
//!
//! A reply is published on the channel the request was delivered on, before the request is
//! acknowledged on that same channel. AMQP keeps a channel's frames in order, so the broker
//! has the reply before it sees the acknowledgement: a crash between the two redelivers the
//! request (at-least-once), it never loses the reply of an acknowledged request.

use authq_protocol::CONTENT_TYPE;
use authq_protocol::Names;
use authq_protocol::names::{DeadLetterReason, headers};
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

/// Publishes a reply body to the caller's `reply_to` through the default exchange, with the
/// request's `correlation_id`.
pub async fn publish_reply(
    channel: &Channel,
    reply_to: &ShortString,
    correlation_id: Option<&ShortString>,
    body: &[u8],
) -> lapin::Result<()> {
    let mut properties = BasicProperties::default().with_content_type(CONTENT_TYPE.into());
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id.clone());
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
    let properties = delivery.properties.clone().with_headers(table);
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
}
