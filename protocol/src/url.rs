//! Broker URLs in logs and error messages, without their password.

/// Replaces the password of a URL's userinfo with `[redacted]`:
/// `amqp://guest:guest@host` → `amqp://guest:[redacted]@host`.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        return broker_urls(url)
            .into_iter()
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one(url)
}

/// The broker URLs of a setting that may list several nodes of one cluster, separated by
/// commas (`amqp://h1:5672/%2f,amqp://h2:5672/%2f`): each trimmed, empty ones skipped.
pub fn broker_urls(setting: &str) -> Vec<&str> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

fn redact_one(url: &str) -> String {
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
    fn url_lists_split_and_redact_each() {
        let list = "amqp://u:p1@a:1/%2f, amqp://u:p2@b:2/%2f,";
        assert_eq!(
            broker_urls(list),
            ["amqp://u:p1@a:1/%2f", "amqp://u:p2@b:2/%2f"]
        );
        assert_eq!(
            redact_url(list),
            "amqp://u:[redacted]@a:1/%2f,amqp://u:[redacted]@b:2/%2f"
        );
    }

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
