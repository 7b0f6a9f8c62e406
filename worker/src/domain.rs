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
    /// The canonical form ([`canonical_email_key`]): what uniqueness and every look-up use
    /// (registration, login, reset, the lockout and spam counters, code digests), so
    /// `Ann@Example.com`, `ａnn@example.com` and `"ann"@example.com` are one user.
    pub key: String,
}

impl Email {
    /// Parses an address: trimmed, at most [`MAX_EMAIL_BYTES`], `local@domain` without a
    /// display name or a domain literal, with its canonical key ([`canonical_email_key`]).
    pub fn parse(raw: &str) -> Result<Self, HandlerError> {
        let address = raw.trim();
        if address.is_empty() {
            return Err(HandlerError::bad_request("email is empty"));
        }
        if address.len() > MAX_EMAIL_BYTES {
            return Err(HandlerError::bad_request("email is too long"));
        }
        Ok(Self {
            address: address.to_owned(),
            key: canonical_email_key(address)?,
        })
    }
}

/// The canonical form of an email address: the one function that decides when two addresses
/// are the same mailbox (and so the same account, the same lockout counter, the same code).
///
/// 1. Unicode NFKC on the whole address (fullwidth `ａ` and `＠` fold to `a` and `@`), then
///    the syntax check (no display name, no domain literal).
/// 2. The local part: a quoted local part is unquoted when its content needs no quotes
///    (`"ann"` → `ann`), and refused otherwise (`"ann@x"`: it would be another mailbox that
///    looks like this one); then lower-cased.
/// 3. A local part that is not ASCII must be single-script (UTS #39 mixed-script detection:
///    a Cyrillic `а` among Latin letters is refused) and must not be confusable with an ASCII
///    one (its UTS #39 skeleton must not be all ASCII: `а1234` in Cyrillic, which looks like
///    `a1234`, is refused); the key holds its skeleton, so two look-alike non-ASCII local parts
///    are one key.
/// 4. The domain through IDNA (UTS #46, `idna::domain_to_ascii`): lower-cased, mapped, and in
///    its ASCII (punycode) form; each non-ASCII label passes the rules of step 3.
pub fn canonical_email_key(address: &str) -> Result<String, HandlerError> {
    use unicode_normalization::UnicodeNormalization;
    let normalized: String = address.nfkc().collect();
    let options = Options::default()
        .without_display_text()
        .without_domain_literal();
    EmailAddress::parse_with_options(&normalized, options)
        .map_err(|_| HandlerError::bad_request("email is not a valid address"))?;
    let (local, domain) = normalized
        .rsplit_once('@')
        .ok_or_else(|| HandlerError::bad_request("email is not a valid address"))?;
    let local = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        None => local,
        Some(inner) if is_dot_atom(inner) => inner,
        Some(_) => {
            return Err(HandlerError::bad_request(
                "email: a quoted local part is accepted only when it needs no quotes",
            ));
        }
    };
    let local = local.to_lowercase();
    let local = if local.is_ascii() {
        local
    } else {
        not_confusable(&local)?;
        unicode_security::skeleton(&local).collect()
    };
    let domain = idna::domain_to_ascii(domain)
        .map_err(|_| HandlerError::bad_request("email: the domain is not a valid domain name"))?;
    let (unicode_domain, converted) = idna::domain_to_unicode(&domain);
    converted
        .map_err(|_| HandlerError::bad_request("email: the domain is not a valid domain name"))?;
    for label in unicode_domain.split('.').filter(|l| !l.is_ascii()) {
        not_confusable(label)?;
    }
    Ok(format!("{local}@{domain}"))
}

/// Whether a quoted local part's content could be written without quotes (RFC 5322
/// dot-atom, with RFC 6531's non-ASCII characters).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        })
}

/// Refuses a non-ASCII part of an address that mixes scripts or looks like ASCII (UTS #39).
fn not_confusable(part: &str) -> Result<(), HandlerError> {
    use unicode_security::MixedScript;
    if !part.is_single_script() {
        return Err(HandlerError::bad_request("email: mixes scripts"));
    }
    if unicode_security::skeleton(part).all(|c| c.is_ascii()) {
        return Err(HandlerError::bad_request(
            "email: looks like another address written in plain ASCII",
        ));
    }
    Ok(())
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
    fn look_alike_emails_have_the_canonical_key_or_are_refused() {
        let key = |s: &str| Email::parse(s).map(|e| e.key);
        let plain = "a1234@example.com";
        // Fullwidth letters and at sign: NFKC.
        assert_eq!(key("\u{FF41}1234@example.com").unwrap(), plain);
        assert_eq!(key("a1234\u{FF20}ＥＸＡＭＰＬＥ.com").unwrap(), plain);
        // The quoted form of the same mailbox: unquoted.
        assert_eq!(key("\"a1234\"@example.com").unwrap(), plain);
        assert_eq!(key("\"A1234\"@Example.com").unwrap(), plain);
        // A quoted local part that needs its quotes: refused.
        assert!(key("\"a1234@x\"@example.com").is_err());
        assert!(key("\"a 1234\"@example.com").is_err());
        // Cyrillic а (U+0430): alone with digits it looks like ASCII, among Latin letters it
        // mixes scripts; both refused.
        assert!(key("\u{430}1234@example.com").is_err());
        assert!(key("\u{430}nn@example.com").is_err());
        assert!(key("p\u{430}ypal@example.com").is_err());
        // IDNA for the domain: Unicode and punycode forms are one key; a look-alike domain
        // label is refused.
        assert_eq!(
            key("ann@bücher.example").unwrap(),
            key("ann@xn--bcher-kva.example").unwrap()
        );
        assert_eq!(
            key("ann@BÜCHER.example").unwrap(),
            "ann@xn--bcher-kva.example"
        );
        assert!(key("ann@ex\u{430}mple.com").is_err());
        // Genuine non-ASCII addresses are accepted, keyed by their skeleton.
        assert!(key("josé@example.com").is_ok());
        assert!(key("иван@example.com").is_ok());
        assert!(key("太郎@example.jp").is_ok());
    }

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
