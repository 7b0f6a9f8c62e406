//! Who is calling: where the worker may send a reply, and who may use the administrative
//! operations.
//!
//! **Reply destinations.** A request's `reply_to` is only a name the caller wrote; publishing
//! there blindly would let a caller aim the worker's replies at a tube, at the dead-letter
//! queue, or at another service's queue. The worker replies only to:
//! - direct reply-to (`amq.rabbitmq.reply-to…`), which the broker binds to the publishing
//!   channel itself;
//! - a server-named queue (`amq.gen-…`): the name the broker gave an exclusive reply queue,
//!   what the Rust client library uses (random, only its owner can consume it);
//! - `{namespace}.reply.{user-id}.{suffix}`: a caller-named reply queue under the caller's own
//!   RabbitMQ user, as validated by the broker in the `user-id` property (the broker's
//!   permissions, `deploy/definitions.json`, let each service create and read only its own).
//!   The suffix is non-empty and has **no dot**, so the owner of such a name is everything
//!   between `{namespace}.reply.` and the last dot: one name has exactly one owner, whatever
//!   dots user names contain (user `svc` cannot name `authq.reply.svc.admin.inbox`, which
//!   belongs to user `svc.admin`).
//!
//! Anything else is refused; the request is dead-lettered (`forbidden_reply_to`), never
//! processed.
//!
//! **Roles.** Operations that act on someone else's account need a role the operator grants
//! to RabbitMQ users, identified by the message's `user-id` property ([`Role`],
//! [`required_role`]):
//! - every caller (the **service** role): the user-facing operations (`register`, `login`,
//!   `check`, `complete_reset`, …);
//! - **reset** ([`crate::Config::reset_callers`]): also `start_reset`, so a web service can
//!   offer "forgot my password" without being able to suspend or delete anyone;
//! - **admin** ([`crate::Config::admin_callers`]): also `suspend`, `unsuspend`,
//!   `delete_user`, `list_users`, `get_user`, `import_users`, `end_user_sessions`,
//!   `reset_mfa`, the service clients' `create_service_client`, `revoke_service_client`,
//!   `list_service_clients` and `rotate_service_client_secret` (and `start_reset`).
//!
//! RabbitMQ checks that property against the publishing connection's user and closes the
//! channel of a publisher that lies, so one service cannot pass for another.

use crate::error::HandlerError;
use authq_protocol::{Names, Operation};

/// Prefix of the broker's direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Prefix of the names the broker gives server-named queues.
pub const SERVER_NAMED: &str = "amq.gen-";

/// Whether the worker may publish a reply to `reply_to`, for a request that came with the
/// validated `user_id` (if any). See the module documentation for the rule.
pub fn reply_to_allowed(names: &Names, reply_to: &str, user_id: Option<&str>) -> bool {
    if reply_to == DIRECT_REPLY_TO
        || reply_to.starts_with(&format!("{DIRECT_REPLY_TO}."))
        || (reply_to.starts_with(SERVER_NAMED) && reply_to.len() > SERVER_NAMED.len())
    {
        return true;
    }
    match (user_id, reply_queue_owner(names, reply_to)) {
        (Some(user), Some(owner)) => !user.is_empty() && owner == user,
        _ => false,
    }
}

/// The RabbitMQ user a caller-named reply queue `{namespace}.reply.{user}.{suffix}` belongs
/// to: everything between the prefix and the last dot (the suffix is non-empty and has no
/// dot). `None` for a name of any other shape.
pub fn reply_queue_owner<'a>(names: &Names, reply_to: &'a str) -> Option<&'a str> {
    let rest = reply_to
        .strip_prefix(names.namespace())?
        .strip_prefix(".reply.")?;
    let (owner, suffix) = rest.rsplit_once('.')?;
    (!owner.is_empty() && !suffix.is_empty()).then_some(owner)
}

/// What a caller may do beyond the user-facing operations, each role including the ones
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Any caller: the user-facing operations.
    Service,
    /// Also `start_reset` (it hands out a credential for someone else's account).
    Reset,
    /// Also `suspend`, `unsuspend`, `delete_user` and the `authq user` operations.
    Admin,
}

/// The role an operation needs.
pub fn required_role(op: Operation) -> Role {
    match op {
        Operation::Suspend | Operation::Unsuspend | Operation::DeleteUser => Role::Admin,
        // `authq user`: reading, importing and ending sessions of anyone's account.
        Operation::ListUsers
        | Operation::GetUser
        | Operation::ImportUsers
        | Operation::EndUserSessions
        | Operation::ResetMfa => Role::Admin,
        // Service clients: issuing machine credentials.
        Operation::CreateServiceClient
        | Operation::RevokeServiceClient
        | Operation::ListServiceClients
        | Operation::RotateServiceClientSecret => Role::Admin,
        Operation::StartReset => Role::Reset,
        _ => Role::Service,
    }
}

/// Whether an operation acts on another user's account (and so needs a granted role).
#[cfg(test)]
fn is_administrative(op: Operation) -> bool {
    required_role(op) > Role::Service
}

/// The role of a caller, by its validated `user-id`: admin if listed in `admin_callers`,
/// reset if listed in `reset_callers`, else service.
pub fn role_of(user_id: Option<&str>, admin_callers: &[String], reset_callers: &[String]) -> Role {
    let listed = |list: &[String]| user_id.is_some_and(|u| list.iter().any(|a| a == u));
    if listed(admin_callers) {
        Role::Admin
    } else if listed(reset_callers) {
        Role::Reset
    } else {
        Role::Service
    }
}

/// Refuses an operation the caller's role does not grant (`forbidden`), before any effect.
pub fn authorize(
    op: Operation,
    user_id: Option<&str>,
    admin_callers: &[String],
    reset_callers: &[String],
) -> Result<(), HandlerError> {
    let needed = required_role(op);
    if role_of(user_id, admin_callers, reset_callers) >= needed {
        return Ok(());
    }
    tracing::warn!(
        caller = user_id,
        needed = ?needed,
        "operation beyond the caller's role: forbidden"
    );
    Err(HandlerError::Forbidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_go_only_to_direct_reply_to_server_named_or_the_caller_s_own_queues() {
        let names = Names::new("authq").unwrap();
        let ok = |r: &str, u: Option<&str>| reply_to_allowed(&names, r, u);
        assert!(ok("amq.rabbitmq.reply-to", None));
        assert!(ok("amq.rabbitmq.reply-to.g1h2AA==.abc", None));
        assert!(ok("amq.gen-JzTY20BRgKO-HjmUJj0wLg", None));
        assert!(ok("authq.reply.web.1", Some("web")));
        // Tubes, the dead-letter queue, other services' queues, other users' reply queues.
        for bad in [
            "authq.session",
            "authq.password",
            "authq.account",
            "authq.dead-letter",
            "authq.unrouted",
            "billing.requests",
            "authq.reply.billing.1",
            "authq.reply.web.",
            "amq.gen-",
            "amq.rabbitmq.reply-tox",
            "",
        ] {
            assert!(!ok(bad, Some("web")), "{bad}");
        }
        assert!(
            !ok("authq.reply.web.1", None),
            "needs the validated user-id"
        );
        // Users `X` and `X.svc`: each name has exactly one owner.
        assert!(ok("authq.reply.X.svc.inbox", Some("X.svc")));
        assert!(!ok("authq.reply.X.svc.inbox", Some("X")), "X.svc's queue");
        assert!(ok("authq.reply.X.inbox", Some("X")));
        assert!(!ok("authq.reply.X.inbox", Some("X.svc")));
        assert!(!ok("authq.reply.X.a.b", Some("X")), "no dot in the suffix");
        assert_eq!(
            reply_queue_owner(&names, "authq.reply.X.svc.inbox"),
            Some("X.svc")
        );
        assert_eq!(reply_queue_owner(&names, "authq.reply..inbox"), None);
        assert_eq!(reply_queue_owner(&names, "authq.reply.X."), None);
    }

    #[test]
    fn administrative_operations_need_a_listed_caller() {
        let admins = vec!["ops".to_owned()];
        let resets = vec!["web".to_owned()];
        for op in Operation::ALL {
            let ok = |user| authorize(*op, user, &admins, &resets).is_ok();
            assert!(ok(Some("ops")), "{op}: admin may do everything");
            let expected_web = ![
                Operation::Suspend,
                Operation::Unsuspend,
                Operation::DeleteUser,
                Operation::ListUsers,
                Operation::GetUser,
                Operation::ImportUsers,
                Operation::EndUserSessions,
                Operation::ResetMfa,
                Operation::CreateServiceClient,
                Operation::RevokeServiceClient,
                Operation::ListServiceClients,
                Operation::RotateServiceClientSecret,
            ]
            .contains(op);
            assert_eq!(ok(Some("web")), expected_web, "{op}: reset role");
            let expected_other = !is_administrative(*op);
            assert_eq!(ok(Some("billing")), expected_other, "{op}: service role");
            assert_eq!(ok(None), expected_other, "{op}: anonymous");
        }
        assert_eq!(required_role(Operation::StartReset), Role::Reset);
        assert_eq!(role_of(Some("web"), &admins, &resets), Role::Reset);
    }
}
