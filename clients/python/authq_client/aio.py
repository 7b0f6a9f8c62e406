"""``AsyncAuthqClient``: the asyncio variant, on aio-pika (``pip install 'authq-client[asyncio]'``).

The same methods as :class:`authq_client.AuthqClient`, each a coroutine, with the same typed
results and exceptions. One client is one connection with one confirm channel and one exclusive
reply queue, shared by every call in flight on its event loop; when the connection drops, calls
in flight fail with :class:`ConnectionLostError` and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Dict, Optional, Union
from urllib.parse import unquote, urlparse

import aio_pika
import aiormq.exceptions

from .client import PROTOCOL_VERSION, _redact, notice_operations
from .errors import (
    AuthqTimeoutError,
    ConnectError,
    ConnectionLostError,
    NoDeploymentError,
    OverloadedError,
    ServerError,
    UnroutableError,
)
from .operations import Operations


class _Link:
    def __init__(self, connection: Any, channel: Any, exchange: Any, reply_queue: str) -> None:
        self.connection = connection
        self.channel = channel
        self.exchange = exchange
        self.reply_queue = reply_queue
        self.waiters: Dict[str, asyncio.Future] = {}
        # Each waiting call's operation, for notices.
        self.operations: Dict[str, str] = {}

    def usable(self) -> bool:
        return not self.connection.is_closed and not self.channel.is_closed

    def forget(self, correlation_id: str) -> Optional[asyncio.Future]:
        """Removes a call (answered, timed out or lost) and returns its waiter."""
        self.operations.pop(correlation_id, None)
        return self.waiters.pop(correlation_id, None)

    def fail(self, error: Exception) -> None:
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self.waiters.clear()
        self.operations.clear()


class AsyncAuthqClient(Operations):
    """An asyncio client of one authq deployment; the arguments are
    :class:`authq_client.AuthqClient`'s. Use it from one event loop."""

    def __init__(
        self,
        url: str,
        namespace: str = "authq",
        timeout: float = 10.0,
        attempts: int = 1,
        user_id: Optional[str] = None,
        connection_name: str = "authq-python-asyncio",
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.attempts = max(1, attempts)
        if user_id is None:
            user_id = unquote(urlparse(url).username or "") or "guest"
        self.user_id = user_id or None
        self.connection_name = connection_name
        self._link: Optional[_Link] = None
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> "AsyncAuthqClient":
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; calls in flight fail with :class:`ConnectionLostError`."""
        link, self._link = self._link, None
        if link is not None:
            link.fail(ConnectionLostError("the client was closed"))
            await link.connection.close()

    async def _get_link(self, timeout: float) -> _Link:
        async with self._opening:
            if self._link is not None and self._link.usable():
                return self._link
            if self._link is not None:
                self._link.fail(ConnectionLostError())
            self._link = await asyncio.wait_for(self._open(timeout), timeout)
            return self._link

    async def _open(self, timeout: float) -> _Link:
        try:
            connection = await aio_pika.connect(self.url, timeout=timeout, client_properties={"connection_name": self.connection_name})
        except aiormq.exceptions.ProbableAuthenticationError:
            raise ConnectError("access_refused", _redact(self.url), "the broker refused the credentials or the virtual host") from None
        except aiormq.exceptions.ConnectionNotAllowed:
            raise ConnectError("access_refused", _redact(self.url), "the broker refused the credentials or the virtual host") from None
        except (OSError, aiormq.exceptions.AMQPError, asyncio.TimeoutError) as e:
            raise ConnectError("connect", _redact(self.url), f"cannot reach the broker ({type(e).__name__})") from None
        try:
            probe = await connection.channel()
            try:
                await probe.get_exchange(self.namespace, ensure=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise NoDeploymentError(self.namespace) from None
            await probe.close()
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
            exchange = await channel.get_exchange(self.namespace, ensure=False)
            link = _Link(connection, channel, exchange, queue.name)

            async def on_reply(message: Any) -> None:
                operations = notice_operations(message, message.body)
                if operations is not None:
                    # A worker declared a tube anew: the calls of its operations may be lost.
                    for cid, op in list(link.operations.items()):
                        waiter = link.forget(cid) if op in operations else None
                        if waiter is not None and not waiter.done():
                            waiter.set_exception(ConnectionLostError("the request's tube was lost"))
                    return
                waiter = link.forget(message.correlation_id or "")
                if waiter is not None and not waiter.done():
                    waiter.set_result(message.body)

            await queue.consume(on_reply, no_ack=True, exclusive=True)
            # Notices, on a channel of their own: a refused bind closes only that channel.
            binder = await connection.channel()
            try:
                reply_queue = await binder.get_queue(queue.name, ensure=False)
                await reply_queue.bind(f"{self.namespace}.notices")
                await binder.close()
            except aiormq.exceptions.AMQPError:
                pass
            connection.close_callbacks.add(lambda *_: link.fail(ConnectionLostError()))
            return link
        except BaseException:
            await connection.close()
            raise

    async def call_raw(
        self,
        operation: str,
        body: Union[bytes, Dict[str, Any]],
        *,
        timeout: Optional[float] = None,
        message_id: Optional[str] = None,
        deadline_ms: Optional[int] = None,
        send_user_id: bool = True,
    ) -> Dict[str, Any]:
        """As :meth:`authq_client.AuthqClient.call_raw`, awaited."""
        timeout = self.timeout if timeout is None else timeout
        payload = json.dumps(body, separators=(",", ":")).encode() if isinstance(body, dict) else body
        message_id = message_id or str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        expiration = deadline_ms is None
        if deadline_ms is None:
            deadline_ms = int(time.time() * 1000 + timeout * 1000)
        correlation_id = str(uuid.uuid4())
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            remaining = end - loop.time()
            if remaining <= 0:
                break
            try:
                link = await self._get_link(remaining)
                waiter = link.waiters.get(correlation_id) or loop.create_future()
                link.waiters[correlation_id] = waiter
                link.operations[correlation_id] = operation
                message = aio_pika.Message(
                    payload,
                    content_type="application/json",
                    reply_to=link.reply_queue,
                    correlation_id=correlation_id,
                    message_id=message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    expiration=max(0.001, remaining) if expiration else None,
                    headers={"x-deadline": deadline_ms, "x-authq-protocol": PROTOCOL_VERSION},
                    user_id=self.user_id if send_user_id else None,
                )
                try:
                    await asyncio.wait_for(link.exchange.publish(message, operation, mandatory=True), remaining)
                except aiormq.exceptions.PublishError:
                    raise UnroutableError(operation) from None
                except aiormq.exceptions.DeliveryError:
                    raise OverloadedError(operation) from None
                except aiormq.exceptions.ChannelNotFoundEntity:
                    raise NoDeploymentError(self.namespace) from None
                except (aiormq.exceptions.AMQPError, ConnectionError) as e:
                    raise ConnectionLostError(type(e).__name__) from None
                share = (end - loop.time()) / (self.attempts - attempt + 1)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(waiter), max(0.0, share))
                    return json.loads(reply)
                except asyncio.TimeoutError:
                    if last:
                        link.forget(correlation_id)
                        break
            except (OverloadedError, ConnectError, ConnectionLostError) as e:
                if last or not e.retryable:
                    raise
                await asyncio.sleep(min(0.25, max(0.0, end - loop.time())))
            except asyncio.TimeoutError:
                if last:
                    break
        raise AuthqTimeoutError(timeout)

    async def call(self, operation: str, body: Dict[str, Any], *, timeout: Optional[float] = None, message_id: Optional[str] = None) -> Dict[str, Any]:
        """As :meth:`authq_client.AuthqClient.call`, awaited."""
        envelope = await self.call_raw(operation, body, timeout=timeout, message_id=message_id)
        if envelope.get("status") == "ok" and isinstance(envelope.get("data"), dict):
            return envelope["data"]
        error = envelope.get("error") or {}
        mfa = error.get("mfa") if isinstance(error.get("mfa"), dict) else None
        raise ServerError(str(error.get("code", "internal")), str(error.get("message", "the reply envelope breaks the protocol")), mfa)

    async def _typed(self, operation: str, body: Dict[str, Any], result: Any, **kw: Any) -> Any:  # type: ignore[override]
        data = await self.call(operation, body, **kw)
        return None if result is None else result.from_dict(data)


__all__ = ["AsyncAuthqClient"]
