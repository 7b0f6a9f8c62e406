//! [`Secret`]: passwords, codes and tokens on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroize;

/// A secret string (password, confirmation code, session or reset token).
///
/// Serialises as a plain JSON string, prints as `[redacted]` in `Debug` and `Display`, and
/// zeroes its memory on drop. Read it only with [`Secret::expose`], at the point of use.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_a_plain_string_and_never_prints() {
        let s = Secret::new("hunter22");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""hunter22""#);
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        let back: Secret = serde_json::from_str(r#""hunter22""#).unwrap();
        assert_eq!(back.expose(), "hunter22");
    }
}
