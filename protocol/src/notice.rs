//! Notices: what workers tell every connected caller about the deployment itself, on the
//! fanout exchange `{ns}.notices` ([`crate::Names::notices`]), to which each caller binds its
//! reply queue. A notice is told apart from a reply by its AMQP `type` property.
//!
//! One reply is a notice too: [`REFUSED`], a worker's answer to a request its tube refused.
//!
//! One notice to every caller exists: [`TubeDeclared`]. A transient tube (the session tube by default) is
//! lost with the broker node that held it, and the requests waiting in it go with it. A caller
//! connected to that node learns it from its connection; a caller connected to another node of
//! a cluster would wait for its timeout. So the worker that declares a tube anew says so, and
//! callers end (or send again) every call in flight for the tube's operations at once.

use serde::{Deserialize, Serialize};

/// The AMQP `type` of a [`TubeDeclared`] notice.
pub const TUBE_DECLARED: &str = "authq.tube_declared";

/// The AMQP `type` of a worker's answer to a request that a full classic or transient tube
/// refused (`x-overflow` `reject-publish-dlx`) and dead-lettered: nothing was done. Sent to
/// the request's `reply_to` with its `correlation_id`, and the body [`REFUSED_BODY`]; a caller
/// that publishes reads without confirms learns of a full tube from it.
pub const REFUSED: &str = "authq.refused";

/// The body of a [`REFUSED`] reply: an error envelope whose code names the condition callers
/// report (`overloaded`, PROTOCOL.md §2), for a client that does not look at the `type`.
pub const REFUSED_BODY: &[u8] = br#"{"status":"error","error":{"code":"overloaded","message":"the tube was full: nothing was done"}}"#;

/// A worker found a tube missing and declared it: every request published to it before that
/// is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TubeDeclared {
    /// The tube (`session`, `password` or `account`).
    pub tube: String,
    /// The operations the tube serves: a caller's calls in flight for these end at once
    /// (`ConnectionLost`) or are published again.
    pub operations: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_is_pinned() {
        let notice = TubeDeclared {
            tube: "session".into(),
            operations: vec!["ping".into(), "check".into()],
        };
        assert_eq!(
            serde_json::to_string(&notice).unwrap(),
            r#"{"tube":"session","operations":["ping","check"]}"#
        );
        assert_eq!(TUBE_DECLARED, "authq.tube_declared");
        assert_eq!(REFUSED, "authq.refused");
        let refused: serde_json::Value = serde_json::from_slice(REFUSED_BODY).unwrap();
        assert_eq!(refused["status"], "error");
        assert_eq!(refused["error"]["code"], "overloaded");
    }
}
