//! Broker URLs in logs and error messages, without their password.

/// Replaces the password of a URL's userinfo with `[redacted]`:
/// `amqp://guest:guest@host` → `amqp://guest:[redacted]@host`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    if userinfo.contains(':') {
        format!("{}{}:[redacted]{}", &url[..scheme_end], user, &rest[at..])
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:[redacted]@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://user@host/"), "amqp://user@host/");
        assert_eq!(
            redact_url("amqps://u:p@h:5671/v?x=1"),
            "amqps://u:[redacted]@h:5671/v?x=1"
        );
    }
}
