//! The closed set of operations. An operation's name is the routing key a request is published
//! with on the request exchange; callers address operations, never queues.

use crate::names::Tube;
use std::fmt;

macro_rules! operations {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $tube:ident, mutating: $mutating:literal; )*) => {
        /// An operation a worker serves. See `PROTOCOL.md` for each one's request and reply.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $( $(#[$doc])* $variant, )*
        }

        impl Operation {
            /// Every operation, in the order `PROTOCOL.md` documents them.
            pub const ALL: &'static [Operation] = &[ $( Operation::$variant, )* ];

            /// The operation's name: its routing key on the request exchange.
            pub const fn as_str(self) -> &'static str {
                match self { $( Operation::$variant => $name, )* }
            }

            /// Parses a routing key into an operation.
            pub fn parse(name: &str) -> Option<Self> {
                match name { $( $name => Some(Operation::$variant), )* _ => None }
            }

            /// The tube that serves this operation unless an operator re-binds it.
            pub const fn default_tube(self) -> Tube {
                match self { $( Operation::$variant => Tube::$tube, )* }
            }

            /// Whether the operation changes state (and so must be idempotent under redelivery).
            pub const fn is_mutating(self) -> bool {
                match self { $( Operation::$variant => $mutating, )* }
            }
        }
    };
}

operations! {
    /// A no-op that replies at once: liveness, and the baseline for benchmarks.
    Ping = "ping" => Session, mutating: false;
    /// Starts a registration: a pending user and a single-use, expiring confirmation code.
    Register = "register" => Account, mutating: true;
    /// Completes a registration with the code and the user's password: the user becomes active.
    ConfirmRegistration = "confirm_registration" => Password, mutating: true;
    /// Email and password to a new session.
    Login = "login" => Password, mutating: true;
    /// A session token to its user; renews the session when it is past the renewal point.
    Check = "check" => Session, mutating: false;
    /// Ends one session.
    Logout = "logout" => Session, mutating: true;
    /// Ends every session of the session's user.
    LogoutAll = "logout_all" => Session, mutating: true;
    /// The live sessions of the session's user, each with its id and device metadata.
    ListSessions = "list_sessions" => Session, mutating: false;
    /// Ends one of the session's user's sessions, named by its session id.
    EndSession = "end_session" => Session, mutating: true;
    /// Starts a password reset: a single-use, expiring reset token.
    StartReset = "start_reset" => Account, mutating: true;
    /// Completes a password reset with the token and a new password; ends every session.
    CompleteReset = "complete_reset" => Password, mutating: true;
    /// Changes the password of a session's user; ends the user's other sessions.
    ChangePassword = "change_password" => Password, mutating: true;
    /// Reads the user (with profile) behind a session.
    GetProfile = "get_profile" => Session, mutating: false;
    /// Merges into (or replaces) the profile of a session's user.
    SetProfile = "set_profile" => Account, mutating: true;
    /// Deletes a user with every session and code.
    DeleteUser = "delete_user" => Account, mutating: true;
    /// Suspends a user: every session ends, and login is refused until `unsuspend`.
    Suspend = "suspend" => Account, mutating: true;
    /// Lifts a suspension.
    Unsuspend = "unsuspend" => Account, mutating: true;
    /// A provider's authorization URL with a fresh single-use `state` (and PKCE challenge).
    SocialUrl = "social_url" => Account, mutating: true;
    /// The provider's `code` and `state` to a session: exchanges the code, fetches the
    /// profile, creates or updates the user.
    SocialLogin = "social_login" => Account, mutating: true;
    /// Links a provider account to a live session's user (after `link_required`).
    LinkSocial = "link_social" => Account, mutating: true;
    /// A service acknowledges that it deleted its data about a deleted user.
    DeletionDone = "deletion_done" => Account, mutating: true;
    /// Which services have acknowledged a user's deletion.
    DeletionStatus = "deletion_status" => Account, mutating: false;
    /// A page of users, by canonical email key, optionally under an email prefix (admin).
    ListUsers = "list_users" => Account, mutating: false;
    /// One user with its state, times, password scheme, sessions and providers (admin).
    GetUser = "get_user" => Account, mutating: false;
    /// Users carried over from another system, with their password hashes (admin).
    ImportUsers = "import_users" => Password, mutating: true;
    /// Ends every session of a user named by id or email (admin).
    EndUserSessions = "end_user_sessions" => Account, mutating: true;
    /// Starts a TOTP enrolment of the session's user: a new secret and its `otpauth://` URI.
    MfaEnroll = "mfa_enroll" => Account, mutating: true;
    /// Activates the enrolment with a first code; replies with the recovery codes.
    MfaConfirm = "mfa_confirm" => Account, mutating: true;
    /// The pending handle of an `mfa_required` login and a code (or a recovery code) to a
    /// session.
    MfaVerify = "mfa_verify" => Account, mutating: true;
    /// Turns the second factor off, with a current code or the password (argon2).
    MfaDisable = "mfa_disable" => Password, mutating: true;
    /// Turns a user's second factor off without a code, for a user who lost both the
    /// authenticator and the recovery codes (admin).
    ResetMfa = "reset_mfa" => Account, mutating: true;
    /// The public keys access tokens are signed with (a JSON Web Key Set).
    Jwks = "jwks" => Session, mutating: false;
    /// Trades a refresh token for a new access token and refresh token.
    Refresh = "refresh" => Session, mutating: true;
    /// Creates a service client (administrative).
    CreateServiceClient = "create_service_client" => Account, mutating: true;
    /// Revokes a service client (administrative).
    RevokeServiceClient = "revoke_service_client" => Account, mutating: true;
    /// Trades a service client's id and secret for an access token.
    ServiceToken = "service_token" => Session, mutating: false;
    /// Lists the service clients (administrative).
    ListServiceClients = "list_service_clients" => Account, mutating: false;
    /// Gives a service client a new secret (administrative).
    RotateServiceClientSecret = "rotate_service_client_secret" => Account, mutating: true;
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinned() {
        let names: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "ping",
                "register",
                "confirm_registration",
                "login",
                "check",
                "logout",
                "logout_all",
                "list_sessions",
                "end_session",
                "start_reset",
                "complete_reset",
                "change_password",
                "get_profile",
                "set_profile",
                "delete_user",
                "suspend",
                "unsuspend",
                "social_url",
                "social_login",
                "link_social",
                "deletion_done",
                "deletion_status",
                "list_users",
                "get_user",
                "import_users",
                "end_user_sessions",
                "mfa_enroll",
                "mfa_confirm",
                "mfa_verify",
                "mfa_disable",
                "reset_mfa",
                "jwks",
                "refresh",
                "create_service_client",
                "revoke_service_client",
                "service_token",
                "list_service_clients",
                "rotate_service_client_secret",
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for &op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
        }
        assert_eq!(Operation::parse("Login"), None);
        assert_eq!(Operation::parse(""), None);
    }

    #[test]
    fn argon2_operations_sit_on_the_password_tube() {
        for op in [
            Operation::Login,
            Operation::ConfirmRegistration,
            Operation::ChangePassword,
            Operation::CompleteReset,
        ] {
            assert_eq!(op.default_tube(), Tube::Password, "{op}");
        }
        assert_eq!(Operation::Check.default_tube(), Tube::Session);
        assert_eq!(Operation::Ping.default_tube(), Tube::Session);
    }
}
