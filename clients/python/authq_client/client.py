"""``AuthqClient``: calls authq over RabbitMQ with pika.

Threading model: pika's connections are not thread-safe, so the client keeps **one connection
per thread** (created on the thread's first call, in a ``threading.local``), each with its own
exclusive reply queue. One ``AuthqClient`` can therefore be shared by every thread of a
threaded web app (gunicorn threads, Flask, Django): calls on different threads run at once,
calls on one thread run one after another. ``close()`` closes every thread's connection.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Set, Union

import pika
import pika.exceptions

from .errors import (
    AuthqError,
    AuthqTimeoutError,
    ConnectError,
    ConnectionLostError,
    NoDeploymentError,
    OverloadedError,
    ServerError,
    UnroutableError,
)
from .operations import Operations
from .types import (  # noqa: F401 - re-exported for typing
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
    ProfileResult,
    RegisterResult,
    SessionSummary,
    SocialLoginResult,
    SocialUrlResult,
    StartResetResult,
    UserStateResult,
)

log = logging.getLogger("authq_client")

#: The protocol version this client speaks (header ``x-authq-protocol``).
PROTOCOL_VERSION = 1

#: The AMQP ``type`` of a worker's notice that it declared a lost tube anew (PROTOCOL.md §8).
TUBE_DECLARED = "authq.tube_declared"


def notice_operations(properties: Any, body: bytes) -> Optional[List[str]]:
    """The operations a ``tube_declared`` notice names (their calls in flight were lost with the
    tube), or ``None`` when the delivery is not a notice."""
    if getattr(properties, "type", None) != TUBE_DECLARED:
        return None
    try:
        operations = json.loads(body).get("operations", [])
    except (ValueError, AttributeError):
        return []
    return [op for op in operations if isinstance(op, str)]

_LOST = (
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.AMQPConnectionError,
)


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    cred, _, host = rest.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in cred else url


class _Link:
    """One connection with its channel (confirm mode) and exclusive reply queue."""

    def __init__(self, url: str, namespace: str, timeout: float, connection_name: str) -> None:
        params = pika.URLParameters(url)
        params.connection_attempts = 1
        params.socket_timeout = timeout
        params.stack_timeout = timeout
        params.blocked_connection_timeout = timeout
        params.client_properties = {"connection_name": connection_name}
        try:
            self.connection = pika.BlockingConnection(params)
        except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError) as e:
            raise ConnectError("access_refused", _redact(url), f"the broker refused the credentials or the virtual host ({type(e).__name__})") from None
        except pika.exceptions.AMQPConnectionError as e:
            detail = type(e).__name__ if not str(e) else str(e)
            raise ConnectError("connect", _redact(url), f"cannot reach the broker ({detail})") from None
        try:
            probe = self.connection.channel()
            probe.exchange_declare(namespace, passive=True)
            probe.close()
        except pika.exceptions.ChannelClosedByBroker as e:
            self.close()
            if e.reply_code == 404:
                raise NoDeploymentError(namespace) from None
            raise
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        declared = self.channel.queue_declare("", exclusive=True, auto_delete=True)
        self.reply_queue: str = declared.method.queue
        self.replies: Dict[str, bytes] = {}
        # Operations named by a notice since the call on this link began (one call at a time).
        self.lost: Set[str] = set()
        self.channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True, exclusive=True)
        # Notices, on a channel of their own: a refusal (an older deployment, a user without the
        # permission) closes only that channel, and calls lost with a tube end at their timeout.
        try:
            binder = self.connection.channel()
            binder.queue_bind(self.reply_queue, f"{namespace}.notices")
            binder.close()
        except pika.exceptions.ChannelClosedByBroker:
            log.debug("no notices: calls lost with a tube end at their timeout")

    def _on_reply(self, _ch: Any, _method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        operations = notice_operations(properties, body)
        if operations is not None:
            self.lost.update(operations)
        elif properties.correlation_id:
            self.replies[properties.correlation_id] = body

    def usable(self) -> bool:
        return self.connection.is_open and self.channel.is_open

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is best effort
            pass


class AuthqClient(Operations):
    """A client of one authq deployment.

    :param url: the broker, e.g. ``amqp://guest:guest@127.0.0.1:5672/%2f``.
    :param namespace: the deployment's namespace (default ``authq``).
    :param timeout: seconds each call waits for its reply (default 10), all attempts
        included; also sent as the request's ``expiration`` and ``x-deadline``, so workers skip
        requests their caller has given up on. Also bounds connecting.
    :param attempts: how many times a call is published before it gives up (default 1). With
        more, a call that got no reply, lost its connection or was refused by a full tube is
        published again with the **same** ``message_id``, which the worker answers from the
        first outcome instead of doing the work twice.
    :param user_id: sent as every request's ``user_id`` (RabbitMQ checks it against the
        connection's user); default: the URL's user name.

    Connections are opened lazily, one per thread (see the module documentation).
    """

    def __init__(
        self,
        url: str,
        namespace: str = "authq",
        timeout: float = 10.0,
        attempts: int = 1,
        user_id: Optional[str] = None,
        connection_name: str = "authq-python",
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.attempts = max(1, attempts)
        if user_id is None:
            user_id = pika.URLParameters(url).credentials.username
        self.user_id = user_id or None
        self.connection_name = connection_name
        self._local = threading.local()
        self._links: List[_Link] = []
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------

    def _link(self, timeout: float) -> _Link:
        link: Optional[_Link] = getattr(self._local, "link", None)
        if link is not None and link.usable():
            return link
        if link is not None:
            self._forget(link)
        link = _Link(self.url, self.namespace, timeout, self.connection_name)
        self._local.link = link
        with self._lock:
            self._links.append(link)
        return link

    def _forget(self, link: _Link) -> None:
        link.close()
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        if getattr(self._local, "link", None) is link:
            self._local.link = None

    def close(self) -> None:
        """Closes every thread's connection. A later call reconnects."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        self._local = threading.local()

    def __enter__(self) -> "AuthqClient":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def _publish_once(
        self,
        link: _Link,
        operation: str,
        body: bytes,
        correlation_id: str,
        message_id: str,
        remaining: float,
        deadline_ms: int,
        expiration: bool,
        send_user_id: bool,
    ) -> None:
        properties = pika.BasicProperties(
            content_type="application/json",
            reply_to=link.reply_queue,
            correlation_id=correlation_id,
            message_id=message_id,
            delivery_mode=2,
            expiration=str(max(1, int(remaining * 1000))) if expiration else None,
            headers={"x-deadline": deadline_ms, "x-authq-protocol": PROTOCOL_VERSION},
            user_id=self.user_id if send_user_id else None,
        )
        try:
            link.channel.basic_publish(self.namespace, operation, body, properties, mandatory=True)
        except pika.exceptions.UnroutableError:
            raise UnroutableError(operation) from None
        except pika.exceptions.NackError:
            raise OverloadedError(operation) from None
        except pika.exceptions.ChannelClosedByBroker as e:
            self._forget(link)
            if e.reply_code == 404:
                raise NoDeploymentError(self.namespace) from None
            raise ConnectionLostError(f"channel closed by the broker: {e.reply_code}") from None

    def call_raw(
        self,
        operation: str,
        body: Union[bytes, Dict[str, Any]],
        *,
        timeout: Optional[float] = None,
        message_id: Optional[str] = None,
        deadline_ms: Optional[int] = None,
        send_user_id: bool = True,
    ) -> Dict[str, Any]:
        """Publishes ``body`` (bytes sent as they are, or a dict encoded as JSON) as a request
        for ``operation`` (any routing key) and returns the reply envelope, decoded but not
        interpreted: ``{"status": "ok", "data": …}`` or ``{"status": "error", "error": …}``.

        ``message_id`` (default: a fresh UUID) identifies the request: send a retry with the
        same one. ``deadline_ms`` overrides the absolute deadline (Unix ms) and then no
        ``expiration`` is sent (for tests of the worker's deadline check); ``send_user_id=False``
        leaves out the ``user_id`` property.

        Raises :class:`AuthqTimeoutError`, :class:`ConnectionLostError`,
        :class:`OverloadedError`, :class:`UnroutableError`, :class:`NoDeploymentError` or
        :class:`ConnectError`.
        """
        timeout = self.timeout if timeout is None else timeout
        if isinstance(body, dict):
            payload = json.dumps(body, separators=(",", ":")).encode()
        else:
            payload = body
        message_id = message_id or str(uuid.uuid4())
        started = time.monotonic()
        deadline = started + timeout
        expiration = deadline_ms is None
        if deadline_ms is None:
            deadline_ms = int(time.time() * 1000 + timeout * 1000)
        correlation_id = str(uuid.uuid4())
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.attempts
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AuthqTimeoutError(timeout)
            try:
                link = self._link(remaining)
                link.lost.clear()
                self._publish_once(link, operation, payload, correlation_id, message_id, remaining, deadline_ms, expiration, send_user_id)
                # Each attempt waits for an equal share of what is left.
                wait_until = time.monotonic() + (deadline - time.monotonic()) / (self.attempts - attempt + 1)
                while correlation_id not in link.replies and operation not in link.lost:
                    left = wait_until - time.monotonic()
                    if left <= 0:
                        break
                    link.connection.process_data_events(time_limit=left)
                reply = link.replies.pop(correlation_id, None)
                if reply is not None:
                    return json.loads(reply)
                if operation in link.lost:
                    # A worker declared the call's tube anew: the request may be gone with it.
                    if last:
                        raise ConnectionLostError("the request's tube was lost")
                elif last:
                    raise AuthqTimeoutError(timeout)
            except (OverloadedError, ConnectError) as e:
                if last or not e.retryable:
                    raise
                time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            except _LOST as e:
                link_now = getattr(self._local, "link", None)
                if link_now is not None:
                    self._forget(link_now)
                if last:
                    raise ConnectionLostError(type(e).__name__) from None
            log.debug("no reply yet to %s (message_id %s): publishing it again", operation, message_id)

    def call(self, operation: str, body: Dict[str, Any], *, timeout: Optional[float] = None, message_id: Optional[str] = None) -> Dict[str, Any]:
        """Calls ``operation`` and returns the reply's ``data``; an error reply raises
        :class:`ServerError` with the protocol's code (and the other errors of
        :meth:`call_raw`)."""
        envelope = self.call_raw(operation, body, timeout=timeout, message_id=message_id)
        if envelope.get("status") == "ok" and isinstance(envelope.get("data"), dict):
            return envelope["data"]
        error = envelope.get("error") or {}
        mfa = error.get("mfa") if isinstance(error.get("mfa"), dict) else None
        raise ServerError(str(error.get("code", "internal")), str(error.get("message", "the reply envelope breaks the protocol")), mfa)

    def _typed(self, operation: str, body: Dict[str, Any], result: Any, **kw: Any) -> Any:
        data = self.call(operation, body, **kw)
        return None if result is None else result.from_dict(data)

__all__ = ["AuthqClient", "AuthqError", "PROTOCOL_VERSION"]
