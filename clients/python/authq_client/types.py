"""Typed replies: one dataclass per reply ``data`` (PROTOCOL.md section 5, and the JSON
Schemas in ``protocol/schema/replies/``). Unknown fields are ignored, as the protocol asks;
secret fields (sessions, codes, tokens, states) are left out of ``repr``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T")


def _from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            value = data[f.name]
            if f.name == "user" and isinstance(value, dict):
                value = User.from_dict(value)
            elif f.name == "sessions" and isinstance(value, list):
                value = [SessionSummary.from_dict(s) for s in value]
            kwargs[f.name] = value
    return cls(**kwargs)  # type: ignore[call-arg]


class _Reply:
    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        """Builds the reply from its JSON object, ignoring fields it does not know."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class User(_Reply):
    """A user as replies show it."""

    id: str
    email: str
    #: ``pending``, ``active`` or ``suspended``.
    state: str
    profile: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisterResult(_Reply):
    """``register``: the pending user and the confirmation code to mail."""

    user_id: str
    code: str = field(repr=False)
    #: Unix milliseconds.
    expires_at: int


@dataclass(frozen=True)
class ConfirmRegistrationResult(_Reply):
    """``confirm_registration``: the now active user."""

    user: User


@dataclass(frozen=True)
class LoginResult(_Reply):
    """``login``: a fresh session."""

    session: str = field(repr=False)
    expires_at: int
    user: User
    access_token: Optional[str] = field(default=None, repr=False)
    access_expires_at: Optional[int] = None
    refresh_token: Optional[str] = field(default=None, repr=False)


@dataclass(frozen=True)
class CheckResult(_Reply):
    """``check``: the session's user and its (possibly renewed) expiry."""

    user: User
    expires_at: int
    renewed: bool
    session_epoch: int = 0


@dataclass(frozen=True)
class LogoutAllResult(_Reply):
    """``logout_all``: how many sessions ended."""

    ended: int


@dataclass(frozen=True)
class SessionSummary(_Reply):
    """One session as ``list_sessions`` shows it: never the token."""

    #: Pass it to ``end_session``.
    id: str
    #: Unix milliseconds.
    created_at: int
    #: The login or the latest renewal (Unix milliseconds).
    last_seen_at: int
    #: Unix milliseconds.
    expires_at: int
    #: Whether this is the session the request was made with.
    current: bool
    user_agent: Optional[str] = None
    client_ip: Optional[str] = None


@dataclass(frozen=True)
class ListSessionsResult(_Reply):
    """``list_sessions``: the user's live sessions, newest first, and how many there are."""

    sessions: List[SessionSummary]
    total: int


@dataclass(frozen=True)
class StartResetResult(_Reply):
    """``start_reset``: the reset token to mail."""

    token: str = field(repr=False)
    expires_at: int


@dataclass(frozen=True)
class CompleteResetResult(_Reply):
    """``complete_reset``: the user; every session ended."""

    user: User
    sessions_ended: int


@dataclass(frozen=True)
class ChangePasswordResult(_Reply):
    """``change_password``: how many other sessions ended."""

    sessions_ended: int


@dataclass(frozen=True)
class ProfileResult(_Reply):
    """``get_profile`` and ``set_profile``: the user with its profile."""

    user: User


@dataclass(frozen=True)
class DeleteUserResult(_Reply):
    """``delete_user``: the deleted user's id."""

    user_id: str


@dataclass(frozen=True)
class UserStateResult(_Reply):
    """``suspend`` and ``unsuspend``: the user in its new state."""

    user: User
    sessions_ended: int


@dataclass(frozen=True)
class SocialUrlResult(_Reply):
    """``social_url``: where to send the browser."""

    url: str = field(repr=False)
    state: str = field(repr=False)
    expires_at: int


@dataclass(frozen=True)
class SocialLoginResult(_Reply):
    """``social_login``: a fresh session."""

    session: str = field(repr=False)
    expires_at: int
    user: User
    created: bool
    access_token: Optional[str] = field(default=None, repr=False)
    access_expires_at: Optional[int] = None
    refresh_token: Optional[str] = field(default=None, repr=False)


@dataclass(frozen=True)
class LinkSocialResult(_Reply):
    """``link_social``: the linked user and provider account."""

    user: User
    provider: str
    subject: str


@dataclass(frozen=True)
class DeletionStatus(_Reply):
    """``deletion_done`` and ``deletion_status``: where a user's deletion cascade stands."""

    user_id: str
    requested_at: int
    deadline: int
    acknowledged: List[str]
    pending: List[str]
    completed_at: Optional[int] = None


@dataclass(frozen=True)
class MfaEnrollResult(_Reply):
    """``mfa_enroll``: the new TOTP secret, inactive until ``mfa_confirm``. ``secret`` and
    ``uri`` are secrets: show them to the user once (``uri`` as a QR code)."""

    #: The shared secret, base32 (RFC 4648, no padding).
    secret: str = field(repr=False)
    #: The ``otpauth://totp/…`` URI authenticator apps read (it contains the secret).
    uri: str = field(repr=False)
    #: Digits per code (6).
    digits: int
    #: Seconds per time step (30).
    period: int


@dataclass(frozen=True)
class MfaConfirmResult(_Reply):
    """``mfa_confirm``: the second factor is on; the ten single-use recovery codes, shown
    this once."""

    recovery_codes: List[str] = field(repr=False)


@dataclass(frozen=True)
class JwksResult(_Reply):
    """``jwks``: the published signing keys, a JSON Web Key Set (each key a dict)."""

    keys: List[Dict[str, Any]]


@dataclass(frozen=True)
class RefreshResult(_Reply):
    """``refresh``: a new access token and the refresh token that replaces the one given."""

    access_token: str = field(repr=False)
    access_expires_at: int
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class ServiceClientResult(_Reply):
    """``create_service_client`` and ``rotate_service_client_secret``: the secret, shown once."""

    client_id: str
    client_secret: str = field(repr=False)
    scopes: List[str]


@dataclass(frozen=True)
class ServiceTokenResult(_Reply):
    """``service_token``: a service client's access token."""

    access_token: str = field(repr=False)
    access_expires_at: int


@dataclass(frozen=True)
class ServiceClientListResult(_Reply):
    """``list_service_clients``: every service client (each a dict; never a secret)."""

    clients: List[Dict[str, Any]]
