//! Parsing and validating what arrives on the wire, before any work is done with it.

use crate::config::PasswordPolicy;
use crate::error::HandlerError;
use authq_protocol::Secret;
use email_address::{EmailAddress, Options};

/// Longest email accepted, in bytes (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

/// A syntactically valid email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// As the user typed it, trimmed: what replies show.
    pub address: String,
    /// Lower-cased: what uniqueness and look-ups use, so `Ann@Example.com` and
    /// `ann@example.com` are one user.
    pub key: String,
}

impl Email {
    /// Parses an address: trimmed, at most [`MAX_EMAIL_BYTES`], `local@domain` without a
    /// display name or a domain literal.
    pub fn parse(raw: &str) -> Result<Self, HandlerError> {
        let address = raw.trim();
        if address.is_empty() {
            return Err(HandlerError::bad_request("email is empty"));
        }
        if address.len() > MAX_EMAIL_BYTES {
            return Err(HandlerError::bad_request("email is too long"));
        }
        let options = Options::default()
            .without_display_text()
            .without_domain_literal();
        EmailAddress::parse_with_options(address, options)
            .map_err(|_| HandlerError::bad_request("email is not a valid address"))?;
        Ok(Self {
            address: address.to_owned(),
            key: address.to_lowercase(),
        })
    }
}

/// Checks a new password against the policy, before it is hashed.
pub fn check_new_password(policy: &PasswordPolicy, password: &Secret) -> Result<(), HandlerError> {
    let pw = password.expose();
    if pw.len() > policy.max_bytes {
        return Err(HandlerError::WeakPassword("the password is too long"));
    }
    if pw.chars().count() < policy.min_chars {
        return Err(HandlerError::WeakPassword("the password is too short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_keyed_case_insensitively() {
        let e = Email::parse("  Ann@Example.COM ").unwrap();
        assert_eq!(e.address, "Ann@Example.COM");
        assert_eq!(e.key, "ann@example.com");
    }

    #[test]
    fn malformed_emails_are_bad_requests() {
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "a@",
            "@b.c",
            "Ann <a@b.c>",
            "a@[127.0.0.1]",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(matches!(err, HandlerError::BadRequest(_)), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn password_policy_is_length_only() {
        let p = PasswordPolicy::default();
        assert!(check_new_password(&p, &"short".into()).is_err());
        assert!(check_new_password(&p, &"longenough".into()).is_ok());
        assert!(check_new_password(&p, &"ñññññññ".into()).is_err()); // 7 chars, 14 bytes
        assert!(check_new_password(&p, &"x".repeat(64).into()).is_ok());
        assert!(check_new_password(&p, &"x".repeat(1025).into()).is_err());
    }
}
