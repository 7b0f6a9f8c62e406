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

/// The body with every secret field's value replaced by `"[redacted]"`, at any depth. A body
/// that is not JSON cannot be redacted field by field: if it mentions a secret field's name it
/// is replaced whole, otherwise it is kept as it is (so a malformed request without secrets
/// can still be inspected).
pub fn redact_body(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            serde_json::to_vec(&value).unwrap_or_else(|_| REDACTED.as_bytes().to_vec())
        }
        Err(_) => {
            let lower = String::from_utf8_lossy(body).to_lowercase();
            if SECRET_FIELDS.iter().any(|f| lower.contains(f)) {
                b"[redacted: a body that is not valid JSON and names a secret field]".to_vec()
            } else {
                body.to_vec()
            }
        }
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
        assert_eq!(text(b"{not json at all"), "{not json at all");
        assert!(!text(b"\xff PASSWORD hunter22").contains("hunter22"));
    }
}
