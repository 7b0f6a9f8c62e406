//! Redacting secrets out of request bodies before they leave the worker (the dead-letter
//! queue keeps requests for inspection; it must not keep their passwords).

use serde_json::Value;

/// The request fields that hold a secret, in any operation of the protocol.
pub const SECRET_FIELDS: &[&str] = &[
    "password",
    "old_password",
    "new_password",
    "code",
    "token",
    "session",
];

/// What a secret field's value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The largest body a dead letter keeps (redacted); a larger one is replaced by a note of its
/// size, so one caller cannot fill the broker through the dead-letter queue.
pub const MAX_KEPT_BODY: usize = 64 * 1024;

/// The body with every secret field's value replaced by `"[redacted]"`, at any depth. A body
/// the worker cannot parse as JSON (not UTF-8, UTF-16, truncated, anything) cannot be redacted
/// field by field, and a secret in it may be spelt any way, so it is replaced whole by a note
/// of its size. A body over [`MAX_KEPT_BODY`] is replaced by a note of its size, unparsed.
pub fn redact_body(body: &[u8]) -> Vec<u8> {
    if body.len() > MAX_KEPT_BODY {
        return format!(
            "[dropped: a body of {} bytes, over the dead-letter limit of {MAX_KEPT_BODY} bytes]",
            body.len()
        )
        .into_bytes();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            serde_json::to_vec(&value).unwrap_or_else(|_| REDACTED.as_bytes().to_vec())
        }
        Err(_) => format!(
            "[redacted: a body of {} bytes that is not valid JSON]",
            body.len()
        )
        .into_bytes(),
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &[u8]) -> String {
        String::from_utf8(redact_body(body)).unwrap()
    }

    #[test]
    fn secret_fields_are_redacted_at_any_depth_and_the_rest_kept() {
        let out =
            text(br#"{"email":"a@b.c","password":"hunter22","nested":[{"token":"t0k3n","x":1}]}"#);
        assert!(!out.contains("hunter22") && !out.contains("t0k3n"), "{out}");
        assert!(
            out.contains(r#""email":"a@b.c""#) && out.contains(r#""x":1"#),
            "{out}"
        );
        for field in SECRET_FIELDS {
            let body = format!(r#"{{"{field}":12345678}}"#);
            assert!(!text(body.as_bytes()).contains("12345678"), "{field}");
        }
    }

    #[test]
    fn malformed_bodies_naming_a_secret_field_are_replaced_whole() {
        let out = text(br#"{"email":"a@b.c","password":"hunter22""#);
        assert!(!out.contains("hunter22"), "{out}");
        assert!(!text(b"\xff PASSWORD hunter22").contains("hunter22"));
    }

    #[test]
    fn any_body_that_is_not_json_or_too_large_is_replaced_whole() {
        // Not JSON, even without a secret field's name: a secret may be spelt any way.
        assert_eq!(
            text(b"{not json at all hunter22"),
            "[redacted: a body of 25 bytes that is not valid JSON]"
        );
        // UTF-16 (the field name is not found by a byte search).
        let utf16: Vec<u8> = r#"{"email":"a@b.c","password":"hunter22"}"#
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(!text(&utf16).contains("hunter22"));
        // Too large: a note, whatever the body.
        let big = format!(r#"{{"email":"{}"}}"#, "a".repeat(MAX_KEPT_BODY));
        let out = text(big.as_bytes());
        assert!(
            out.starts_with("[dropped: a body of") && out.len() < 200,
            "{out}"
        );
    }
}
