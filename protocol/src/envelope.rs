//! The reply envelope, common to every operation.
//!
//! ```json
//! {"status":"ok","data":{…}}
//! {"status":"error","error":{"code":"invalid_credentials","message":"email or password is wrong"}}
//! ```

use crate::error::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

/// Whether a reply carries data or an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The operation succeeded; `data` holds its reply.
    Ok,
    /// The operation failed; `error` says why.
    Error,
}

/// A reply body. Exactly one of `data` (when `status` is `ok`) and `error` (when `status` is
/// `error`) is present.
///
/// A plain struct rather than a tagged enum, so decoding streams straight into `T` without an
/// intermediate JSON value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// `ok` or `error`.
    pub status: Status,
    /// The operation's reply, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// What went wrong, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> Envelope<T> {
    /// Turns the envelope into a `Result`; an envelope that breaks the contract (an `ok` without
    /// `data`, an `error` without `error`) becomes an `internal` error.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match (self.status, self.data, self.error) {
            (Status::Ok, Some(data), _) => Ok(data),
            (Status::Error, _, Some(error)) => Err(error),
            _ => Err(ErrorBody::with_message(
                ErrorCode::Internal,
                "the reply envelope breaks the protocol",
            )),
        }
    }
}

#[derive(Serialize)]
struct OkRef<'a, T> {
    status: Status,
    data: &'a T,
}

#[derive(Serialize)]
struct ErrorRef<'a> {
    status: Status,
    error: ErrorRefBody<'a>,
}

#[derive(Serialize)]
struct ErrorRefBody<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa: Option<&'a crate::ops::MfaPending>,
}

/// Encodes a success reply: `{"status":"ok","data":…}`.
pub fn encode_ok<T: Serialize>(data: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&OkRef {
        status: Status::Ok,
        data,
    })
}

/// Encodes an error reply: `{"status":"error","error":{"code":…,"message":…}}`.
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    encode_error_with(code, message, None)
}

/// Encodes an error reply that may carry an `mfa_required` reply's pending handle:
/// `{"status":"error","error":{"code":…,"message":…,"mfa":{…}}}`.
pub fn encode_error_with(
    code: ErrorCode,
    message: &str,
    mfa: Option<&crate::ops::MfaPending>,
) -> Vec<u8> {
    // Serialising strings, an integer and an enum into a Vec cannot fail.
    serde_json::to_vec(&ErrorRef {
        status: Status::Error,
        error: ErrorRefBody { code, message, mfa },
    })
    .unwrap_or_default()
}

/// Decodes a reply body into the operation's result.
pub fn decode_reply<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Result<T, ErrorBody>, serde_json::Error> {
    serde_json::from_slice::<Envelope<T>>(body).map(Envelope::into_result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ok_shape_is_pinned() {
        let bytes = encode_ok(&json!({"pong": true})).unwrap();
        assert_eq!(bytes, br#"{"status":"ok","data":{"pong":true}}"#);
        let back: Result<serde_json::Value, _> = decode_reply(&bytes).unwrap();
        assert_eq!(back.unwrap(), json!({"pong": true}));
    }

    #[test]
    fn error_shape_is_pinned() {
        let bytes = encode_error(ErrorCode::InvalidCredentials, "email or password is wrong");
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"status":"error","error":{"code":"invalid_credentials","message":"email or password is wrong"}}"#
        );
        let back: Result<serde_json::Value, _> = decode_reply(&bytes).unwrap();
        assert_eq!(back.unwrap_err().code, ErrorCode::InvalidCredentials);
    }

    #[test]
    fn contract_breaking_envelopes_are_internal_errors() {
        let back: Result<serde_json::Value, _> = decode_reply(br#"{"status":"ok"}"#).unwrap();
        assert_eq!(back.unwrap_err().code, ErrorCode::Internal);
    }

    #[test]
    fn unknown_envelope_fields_are_ignored() {
        let back: Result<u32, _> =
            decode_reply(br#"{"status":"ok","data":7,"trace":"x"}"#).unwrap();
        assert_eq!(back.unwrap(), 7);
    }
}
