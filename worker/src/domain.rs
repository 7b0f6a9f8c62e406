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

/// Normalises a password to Unicode NFKC, the form it is hashed and verified in (so the same
/// password typed on two keyboards, precomposed or not, is one password). The caller must have
/// checked the raw length against the policy first: normalisation costs time in the input size.
pub fn normalize_password(password: &Secret) -> Secret {
    use unicode_normalization::UnicodeNormalization;
    let pw = password.expose();
    if pw.is_ascii() {
        // ASCII is its own NFKC form.
        return password.clone();
    }
    Secret::new(pw.nfkc().collect::<String>())
}

/// Whether a password presented for verification is longer than any password ever accepted:
/// refused before normalisation and argon2, so a megabyte costs neither.
pub fn too_long(policy: &PasswordPolicy, password: &Secret) -> bool {
    password.expose().len() > policy.max_bytes
}

/// Checks a new password against the policy, before it is hashed, and returns it normalised
/// (NFKC): the byte limit first (on the raw input and on the normalised form), then the
/// minimum length in characters, then the blocklist of common passwords and of passwords built
/// from the user's own email. No composition rules (NIST SP 800-63B § 3.1.1.2).
pub fn check_new_password(
    policy: &PasswordPolicy,
    password: &Secret,
    email: &Email,
) -> Result<Secret, HandlerError> {
    if too_long(policy, password) {
        return Err(HandlerError::WeakPassword("the password is too long"));
    }
    let normalized = normalize_password(password);
    let pw = normalized.expose();
    if pw.len() > policy.max_bytes {
        return Err(HandlerError::WeakPassword("the password is too long"));
    }
    if pw.chars().count() < policy.min_chars {
        return Err(HandlerError::WeakPassword("the password is too short"));
    }
    if is_common(pw) {
        return Err(HandlerError::WeakPassword(
            "the password is one of the most commonly used passwords",
        ));
    }
    if is_built_from_email(pw, email) {
        return Err(HandlerError::WeakPassword(
            "the password is built from the email address",
        ));
    }
    Ok(normalized)
}

/// Whether the password (or its lower-cased form) is in the blocklist: the ~100,000 most
/// common passwords shipped by the `passwords` crate (feature `common-password`).
fn is_common(pw: &str) -> bool {
    use passwords::analyzer::is_common_password;
    if is_common_password(pw) {
        return true;
    }
    let lower = pw.to_lowercase();
    lower != pw && is_common_password(&lower)
}

/// Whether the password is the email, or is made of the email's parts (the local part, the
/// domain's labels) with only digits and punctuation around them: `ann@example.com`,
/// `AnnExample`, `ann.example.com!`, `ann12345678`.
fn is_built_from_email(pw: &str, email: &Email) -> bool {
    let mut rest = pw.to_lowercase();
    let (local, domain) = email.key.rsplit_once('@').unwrap_or((&email.key, ""));
    let mut parts: Vec<&str> = vec![email.key.as_str(), local];
    parts.extend(domain.split('.'));
    // Longest first, so the whole email is removed before its parts.
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut found = false;
    for part in parts.into_iter().filter(|p| p.chars().count() >= 3) {
        if rest.contains(part) {
            found = true;
            rest = rest.replace(part, "");
        }
    }
    found && rest.chars().all(|c| !c.is_alphabetic())
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

    fn check(pw: &str) -> Result<Secret, HandlerError> {
        let ann = Email::parse("ann.smith@example.com").unwrap();
        check_new_password(&PasswordPolicy::default(), &pw.into(), &ann)
    }

    fn weak(pw: &str) -> &'static str {
        match check(pw) {
            Err(HandlerError::WeakPassword(rule)) => rule,
            other => panic!("{pw:?} should be weak, got {other:?}"),
        }
    }

    #[test]
    fn length_rules_count_characters_and_cap_bytes() {
        assert_eq!(weak("short"), "the password is too short");
        assert!(check("quiet lantern ferry").is_ok());
        assert_eq!(weak("ñññññññ"), "the password is too short"); // 7 chars, 14 bytes
        // At least 64 characters are accepted, and no composition rule applies.
        let long: String = "quiet lantern ferry ".repeat(4);
        assert!(long.len() >= 64);
        assert!(check(&long).is_ok());
        assert_eq!(weak(&"x".repeat(1025)), "the password is too long");
        // A megabyte is refused by its length alone.
        assert_eq!(weak(&"y".repeat(1 << 20)), "the password is too long");
    }

    #[test]
    fn passwords_are_nfkc_normalised_and_never_truncated() {
        // "ﬁ" (U+FB01) is "fi" in NFKC; precomposed and combining "é" are one password.
        let a = check("ﬁne lantern ferry").unwrap();
        assert_eq!(a.expose(), "fine lantern ferry");
        let composed = check("caf\u{e9} lantern ferry").unwrap();
        let combining = check("cafe\u{301} lantern ferry").unwrap();
        assert_eq!(composed.expose(), combining.expose());
        // Nothing is cut: two passwords that differ only in their 200th byte stay different.
        let p1 = format!("{}a", "quiet lantern ".repeat(15));
        let p2 = format!("{}b", "quiet lantern ".repeat(15));
        assert_ne!(check(&p1).unwrap().expose(), check(&p2).unwrap().expose());
        assert_eq!(check(&p1).unwrap().expose(), p1);
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for pw in [
            "password",
            "12345678",
            "iloveyou",
            "PASSWORD",
            "Password1",
            "qwertyuiop",
        ] {
            assert_eq!(
                weak(pw),
                "the password is one of the most commonly used passwords",
                "{pw}"
            );
        }
    }

    #[test]
    fn the_blocklist_has_at_least_3000_of_the_most_common_passwords() {
        // Spot checks across the well-known top lists: every one of them is refused.
        let top = [
            "123456789",
            "11111111",
            "sunshine",
            "princess",
            "football",
            "baseball",
            "welcome1",
            "trustno1",
            "superman",
            "1qaz2wsx",
            "qwerty123",
            "michael1",
        ];
        for pw in top {
            assert!(is_common(pw), "{pw}");
        }
    }

    #[test]
    fn passwords_built_from_the_email_are_refused() {
        for pw in [
            "ann.smith@example.com",
            "ANN.SMITH@EXAMPLE.COM",
            "ann.smithexample",
            "ann.smith12345",
            "example.com!!!!",
            "ann.smith.example.com",
        ] {
            assert_eq!(
                weak(pw),
                "the password is built from the email address",
                "{pw}"
            );
        }
        // Containing a part of the email among other words is fine.
        assert!(check("ann.smith rides the quiet ferry").is_ok());
    }
}
