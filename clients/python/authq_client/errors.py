"""Exceptions raised by :class:`authq_client.AuthqClient`.

Every exception is an :class:`AuthqError` with a ``code``: for an error reply from a worker it
is the protocol's error code (``invalid_credentials``, ``session_invalid``…, PROTOCOL.md section
6); for conditions the caller observes on the broker it is one of ``overloaded``,
``unroutable``, ``no_deployment``, ``timeout``, ``connection_lost``, ``connect`` and
``access_refused``, each with its own subclass. Messages never contain passwords or tokens.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


class AuthqError(Exception):
    """A call did not return its reply's data. Branch on :attr:`code`."""

    #: The error code (see the module documentation).
    code: str
    #: A human-readable explanation: log or show it, never parse it.
    message: str
    #: Whether retrying the same call (with the same ``message_id``) may succeed.
    retryable: bool = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerError(AuthqError):
    """The worker answered with an error reply; :attr:`code` is the protocol's error code."""

    def __init__(self, code: str, message: str, mfa: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(code, message)
        self.retryable = code in ("too_many_attempts", "provider_unavailable", "unavailable", "internal")
        #: With ``mfa_required``: ``{"handle", "expires_at"}``, the pending handle to pass to
        #: ``mfa_verify`` with a code.
        self.mfa = mfa


class OverloadedError(AuthqError):
    """The broker refused the request: the tube that serves it is full. Nothing was done;
    retry later, with back-off."""

    retryable = True

    def __init__(self, operation: str) -> None:
        super().__init__("overloaded", f"authq is overloaded: the broker refused {operation!r} (its tube is full)")


class UnroutableError(AuthqError):
    """The broker could route the request to no queue (the deployment's queues are gone).
    Nothing was done."""

    def __init__(self, operation: str) -> None:
        super().__init__("unroutable", f"the broker could not route the {operation!r} request to any queue")


class NoDeploymentError(AuthqError):
    """No authq deployment uses this namespace on this broker (its exchange does not exist)."""

    def __init__(self, namespace: str) -> None:
        super().__init__("no_deployment", f"no authq deployment with namespace {namespace!r} on this broker")


class AuthqTimeoutError(AuthqError):
    """No reply within the call's timeout. The request may still be processed: retry a
    mutating call only with the same ``message_id``. A stopped worker pool looks like this."""

    retryable = True

    def __init__(self, timeout: float) -> None:
        super().__init__("timeout", f"no reply within {timeout:.3f} s")


class ConnectionLostError(AuthqError):
    """The connection to the broker dropped while the call was in flight; the next call
    reconnects. The request may or may not have been processed."""

    retryable = True

    def __init__(self, detail: str = "") -> None:
        super().__init__("connection_lost", "the connection to the broker was lost" + (f": {detail}" if detail else ""))


class ConnectError(AuthqError):
    """The broker could not be reached (``code == "connect"``) or refused the credentials or
    the virtual host (``code == "access_refused"``)."""

    def __init__(self, code: str, url: str, detail: str) -> None:
        super().__init__(code, f"{url}: {detail}")
        self.retryable = code == "connect"
