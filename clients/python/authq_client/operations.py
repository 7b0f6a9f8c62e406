"""The operations, written once for both clients: each method builds the request and names
its typed result; ``_typed`` (the client's) makes the call. On :class:`AuthqClient` a method
returns the result; on :class:`AsyncAuthqClient` it returns an awaitable of it."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .types import (
    ChangePasswordResult,
    CheckResult,
    CompleteResetResult,
    ConfirmRegistrationResult,
    DeleteUserResult,
    DeletionStatus,
    LinkSocialResult,
    ListSessionsResult,
    LoginResult,
    LogoutAllResult,
    MfaConfirmResult,
    MfaEnrollResult,
    ProfileResult,
    RegisterResult,
    SocialLoginResult,
    SocialUrlResult,
    StartResetResult,
    UserStateResult,
)


class Operations:
    """One method per operation. Every method takes keyword arguments ``timeout`` (seconds,
    default the client's) and ``message_id`` (default a fresh UUID; pass the same one to retry
    a call safely); an error reply raises :class:`ServerError` with the protocol's code."""

    def _typed(self, operation: str, body: Dict[str, Any], result: Any, **kw: Any) -> Any:
        raise NotImplementedError

    # Every method takes keyword arguments ``timeout`` (seconds, default the client's) and
    # ``message_id`` (default a fresh UUID; pass the same one to retry a call safely).

    def ping(self, **kw: Any) -> Any:
        """``ping``: a no-op round trip."""
        return self._typed("ping", {}, None, **kw)

    def register(self, email: str, profile: Optional[Dict[str, Any]] = None, **kw: Any) -> RegisterResult:
        """``register``: a pending user and the confirmation code to mail. Errors:
        ``user_exists``, ``too_many_attempts``, ``bad_request``."""
        body: Dict[str, Any] = {"email": email}
        if profile is not None:
            body["profile"] = profile
        return self._typed("register", body, RegisterResult, **kw)

    def confirm_registration(self, email: str, code: str, password: str, **kw: Any) -> ConfirmRegistrationResult:
        """``confirm_registration``: the code and the chosen password make the user active.
        Errors: ``invalid_code``, ``weak_password``."""
        return self._typed("confirm_registration", {"email": email, "code": code, "password": password}, ConfirmRegistrationResult, **kw)

    def login(self, email: str, password: str, client_ip: Optional[str] = None, user_agent: Optional[str] = None, **kw: Any) -> LoginResult:
        """``login``: a new session. ``client_ip`` and ``user_agent`` (at most 512 bytes) are
        the end user's, kept with the session for ``list_sessions``. Errors:
        ``invalid_credentials``, ``user_suspended``, ``too_many_attempts``, ``policy_denied``,
        ``bad_request``."""
        body = {"email": email, "password": password}
        if client_ip is not None:
            body["client_ip"] = client_ip
        if user_agent is not None:
            body["user_agent"] = user_agent
        return self._typed("login", body, LoginResult, **kw)

    def check(self, session: str, **kw: Any) -> CheckResult:
        """``check``: the session's user. Errors: ``session_invalid``, ``user_suspended``."""
        return self._typed("check", {"session": session}, CheckResult, **kw)

    def logout(self, session: str, **kw: Any) -> Any:
        """``logout``: ends the session. Errors: ``session_invalid``."""
        return self._typed("logout", {"session": session}, None, **kw)

    def logout_all(self, session: str, **kw: Any) -> LogoutAllResult:
        """``logout_all``: ends every session of the session's user."""
        return self._typed("logout_all", {"session": session}, LogoutAllResult, **kw)

    def list_sessions(self, session: str, **kw: Any) -> ListSessionsResult:
        """``list_sessions``: the live sessions of the session's user, newest first (never
        tokens). Errors: ``session_invalid``, ``user_suspended``."""
        return self._typed("list_sessions", {"session": session}, ListSessionsResult, **kw)

    def end_session(self, session: str, session_id: str, **kw: Any) -> Any:
        """``end_session``: ends one of the user's sessions by its id from ``list_sessions``.
        Errors: ``session_invalid``, ``session_not_found``."""
        return self._typed("end_session", {"session": session, "session_id": session_id}, None, **kw)

    def start_reset(self, email: str, **kw: Any) -> StartResetResult:
        """``start_reset`` (administrative): a reset token to mail. Errors:
        ``too_many_attempts``, ``forbidden``."""
        return self._typed("start_reset", {"email": email}, StartResetResult, **kw)

    def complete_reset(self, email: str, token: str, password: str, **kw: Any) -> CompleteResetResult:
        """``complete_reset``: a new password with the reset token; ends every session.
        Errors: ``invalid_code``, ``weak_password``."""
        return self._typed("complete_reset", {"email": email, "token": token, "password": password}, CompleteResetResult, **kw)

    def change_password(self, session: str, old_password: str, new_password: str, **kw: Any) -> ChangePasswordResult:
        """``change_password``: ends the user's other sessions. Errors: ``session_invalid``,
        ``invalid_credentials``, ``weak_password``, ``user_suspended``."""
        return self._typed("change_password", {"session": session, "old_password": old_password, "new_password": new_password}, ChangePasswordResult, **kw)

    def get_profile(self, session: str, **kw: Any) -> ProfileResult:
        """``get_profile``: the session's user with its profile."""
        return self._typed("get_profile", {"session": session}, ProfileResult, **kw)

    def set_profile(self, session: str, profile: Dict[str, Any], mode: str = "merge", **kw: Any) -> ProfileResult:
        """``set_profile``: ``merge`` (RFC 7396, the default) or ``replace`` the profile."""
        return self._typed("set_profile", {"session": session, "profile": profile, "mode": mode}, ProfileResult, **kw)

    @staticmethod
    def _user_ref(user_id: Optional[str], email: Optional[str]) -> Dict[str, str]:
        if (user_id is None) == (email is None):
            raise ValueError("name the user by exactly one of user_id and email")
        return {"user_id": user_id} if user_id is not None else {"email": email}  # type: ignore[dict-item]

    def delete_user(self, *, user_id: Optional[str] = None, email: Optional[str] = None, **kw: Any) -> DeleteUserResult:
        """``delete_user`` (administrative). Errors: ``not_found``, ``forbidden``."""
        return self._typed("delete_user", self._user_ref(user_id, email), DeleteUserResult, **kw)

    def suspend(self, *, user_id: Optional[str] = None, email: Optional[str] = None, **kw: Any) -> UserStateResult:
        """``suspend`` (administrative). Errors: ``not_found``, ``forbidden``."""
        return self._typed("suspend", self._user_ref(user_id, email), UserStateResult, **kw)

    def unsuspend(self, *, user_id: Optional[str] = None, email: Optional[str] = None, **kw: Any) -> UserStateResult:
        """``unsuspend`` (administrative). Errors: ``not_found``, ``forbidden``."""
        return self._typed("unsuspend", self._user_ref(user_id, email), UserStateResult, **kw)

    def social_url(self, provider: str, redirect_uri: Optional[str] = None, **kw: Any) -> SocialUrlResult:
        """``social_url``: the provider's authorization URL. Errors: ``unknown_provider``."""
        body = {"provider": provider}
        if redirect_uri is not None:
            body["redirect_uri"] = redirect_uri
        return self._typed("social_url", body, SocialUrlResult, **kw)

    def social_login(self, provider: str, code: str, state: str, **kw: Any) -> SocialLoginResult:
        """``social_login``: the provider's ``code`` and ``state`` to a session."""
        return self._typed("social_login", {"provider": provider, "code": code, "state": state}, SocialLoginResult, **kw)

    def link_social(self, session: str, provider: str, code: str, state: str, **kw: Any) -> LinkSocialResult:
        """``link_social``: links a provider account to the session's user."""
        return self._typed("link_social", {"session": session, "provider": provider, "code": code, "state": state}, LinkSocialResult, **kw)

    def deletion_done(self, user_id: str, service: str, **kw: Any) -> DeletionStatus:
        """``deletion_done``: ``service`` deleted its data about ``user_id``."""
        return self._typed("deletion_done", {"user_id": user_id, "service": service}, DeletionStatus, **kw)

    def deletion_status(self, user_id: str, **kw: Any) -> DeletionStatus:
        """``deletion_status``: which services acknowledged the deletion of ``user_id``."""
        return self._typed("deletion_status", {"user_id": user_id}, DeletionStatus, **kw)

    def mfa_enroll(self, session: str, **kw: Any) -> MfaEnrollResult:
        """``mfa_enroll``: a new TOTP secret for the session's user, inactive until
        ``mfa_confirm`` (calling it again before that replaces it). Errors:
        ``session_invalid``, ``user_suspended``, ``mfa_enabled``."""
        return self._typed("mfa_enroll", {"session": session}, MfaEnrollResult, **kw)

    def mfa_confirm(self, session: str, code: str, **kw: Any) -> MfaConfirmResult:
        """``mfa_confirm``: the first code from the authenticator turns the second factor on;
        returns the recovery codes. Errors: ``session_invalid``, ``invalid_code``,
        ``too_many_attempts``, ``mfa_enabled``, ``mfa_not_enabled``."""
        return self._typed("mfa_confirm", {"session": session, "code": code}, MfaConfirmResult, **kw)

    def mfa_verify(self, handle: str, code: Optional[str] = None, *, recovery_code: Optional[str] = None, **kw: Any) -> LoginResult:
        """``mfa_verify``: the pending handle of an ``mfa_required`` login
        (``ServerError.mfa["handle"]``) and exactly one of a TOTP ``code`` and a
        ``recovery_code`` (used up by the call) to the session the login would have opened.
        Errors: ``invalid_code``, ``too_many_attempts``."""
        if (code is None) == (recovery_code is None):
            raise ValueError("pass exactly one of code and recovery_code")
        body = {"handle": handle, "code": code} if code is not None else {"handle": handle, "recovery_code": recovery_code}
        return self._typed("mfa_verify", body, LoginResult, **kw)

    def mfa_disable(self, session: str, *, code: Optional[str] = None, password: Optional[str] = None, **kw: Any) -> Any:
        """``mfa_disable``: turns the second factor off, proven by exactly one of a fresh
        ``code`` and the ``password``. Errors: ``session_invalid``, ``user_suspended``,
        ``invalid_code``, ``invalid_credentials``, ``too_many_attempts``,
        ``mfa_not_enabled``."""
        if (code is None) == (password is None):
            raise ValueError("pass exactly one of code and password")
        body = {"session": session, "code": code} if code is not None else {"session": session, "password": password}
        return self._typed("mfa_disable", body, None, **kw)
