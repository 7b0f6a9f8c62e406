"""AsyncAuthqClient (aio-pika): the conformance suite and the client's own behaviour, against
the real broker; each test runs its own event loop."""

import asyncio
import json
import uuid

import pytest

from authq_client import AuthqError, AuthqTimeoutError, ConnectError, ConnectionLostError, OverloadedError, ServerError, UnroutableError
from authq_client.aio import AsyncAuthqClient

from test_client import current_step, send_notice_once_queued, totp
from test_conformance import CASES, check_schema, contains, substitute

PASSWORD = "correct horse battery"


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["name"] for c in CASES["cases"]])
def test_conformance_asyncio(amqp_url, namespace, case):
    async def main():
        async with AsyncAuthqClient(amqp_url, namespace=namespace, timeout=20) as client:
            variables = {"run": uuid.uuid4().hex[:12]}
            by_id = {}
            for index, step in enumerate(case["steps"]):
                at = f"{case['name']} step {index}"
                op, expect = step["call"], step["expect"]
                for _ in range(step.get("repeat", 1)):
                    if "raw_body" in step:
                        body = step["raw_body"].encode()
                    else:
                        payload = substitute(step["body"], variables)
                        if "pad_to_bytes" in step:
                            payload["pad"] = "x" * step["pad_to_bytes"]
                        body = json.dumps(payload).encode()
                    import time

                    try:
                        reply = await client.call_raw(
                            op,
                            body,
                            timeout=expect.get("wait_ms", 20_000) / 1000,
                            message_id=substitute(step["message_id"], variables) if "message_id" in step else None,
                            deadline_ms=int(time.time() * 1000) - 60_000 if step.get("deadline") == "past" else None,
                            send_user_id=not step.get("anonymous", False),
                        )
                    except AuthqTimeoutError:
                        assert expect.get("outcome") == "no_reply", f"{at}: no reply"
                        continue
                    assert expect.get("outcome") != "no_reply", f"{at}: {reply}"
                    check_schema(op, reply)
                    assert reply["status"] == expect["status"], f"{at}: {reply}"
                    if "code" in expect:
                        assert reply["error"]["code"] == expect["code"], f"{at}: {reply}"
                    if "data" in expect:
                        assert contains(reply["data"], substitute(expect["data"], variables)), f"{at}: {reply}"
                    if "same_data_as" in expect:
                        assert by_id[expect["same_data_as"]]["data"] == reply["data"], at
                    if "id" in step:
                        by_id[step["id"]] = reply
                    for name, path in step.get("save", {}).items():
                        value = reply["data"]
                        for part in path.split("."):
                            value = value[part]
                        variables[name] = value

    run(main())


def test_typed_calls_in_parallel(amqp_url, namespace):
    async def main():
        async with AsyncAuthqClient(amqp_url, namespace=namespace, timeout=20) as client:
            email = f"aio-{uuid.uuid4().hex[:12]}@example.com"
            reg = await client.register(email)
            await client.confirm_registration(email, reg.code, PASSWORD)
            login = await client.login(email, PASSWORD)
            checks = await asyncio.gather(*(client.check(login.session) for _ in range(30)))
            assert all(c.user.email == email for c in checks)
            with pytest.raises(ServerError) as e:
                await client.login(email, "wrong password")
            assert isinstance(e.value, AuthqError) and e.value.code == "invalid_credentials"
            mid = str(uuid.uuid4())
            first = await client.register(f"aio-{uuid.uuid4().hex[:12]}@example.com", message_id=mid)
            assert first.code
            await client.ping()

    run(main())


def test_the_second_factor_asyncio(amqp_url, namespace):
    """Enrol and confirm, log in through mfa_verify with a recovery code, turn the second
    factor off with a code."""

    async def main():
        async with AsyncAuthqClient(amqp_url, namespace=namespace, timeout=20) as client:
            email = f"aio-{uuid.uuid4().hex[:12]}@example.com"
            reg = await client.register(email)
            await client.confirm_registration(email, reg.code, PASSWORD)
            session = (await client.login(email, PASSWORD)).session
            enrol = await client.mfa_enroll(session)
            step = current_step()
            confirmed = await client.mfa_confirm(session, totp(enrol.secret, step))
            assert len(confirmed.recovery_codes) == 10
            with pytest.raises(ServerError) as e:
                await client.login(email, PASSWORD)
            assert e.value.code == "mfa_required"
            login = await client.mfa_verify(e.value.mfa["handle"], recovery_code=confirmed.recovery_codes[0])
            assert login.user.id == reg.user_id
            # The confirming step's code is spent; the next step's is fresh (and in the window).
            with pytest.raises(ServerError) as e:
                await client.mfa_disable(login.session, code=totp(enrol.secret, step))
            assert e.value.code == "invalid_code"
            assert await client.mfa_disable(login.session, code=totp(enrol.secret, step + 1)) is None
            assert (await client.login(email, PASSWORD)).user.id == reg.user_id

    run(main())


def test_broker_conditions(amqp_url):
    import pika

    name = f"authq-aio-{uuid.uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(name, "direct")
    try:

        async def main():
            async with AsyncAuthqClient(amqp_url, namespace=name) as client:
                with pytest.raises(UnroutableError):
                    await client.ping()
            channel.queue_declare(f"{name}.full", auto_delete=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
            channel.queue_bind(f"{name}.full", name, "ping")
            async with AsyncAuthqClient(amqp_url, namespace=name) as client:
                with pytest.raises(OverloadedError):
                    await client.ping()
            channel.queue_declare(f"{name}.idle", auto_delete=True)
            channel.queue_bind(f"{name}.idle", name, "check")
            async with AsyncAuthqClient(amqp_url, namespace=name, timeout=0.5) as client:
                with pytest.raises(AuthqTimeoutError):
                    await client.check("s")
            with pytest.raises(ConnectError) as e:
                await AsyncAuthqClient("amqp://guest:not-the-password@127.0.0.1:5672/%2f", timeout=5).ping()
            assert e.value.code == "access_refused" and "not-the-password" not in str(e.value)

        run(main())
    finally:
        channel.queue_delete(f"{name}.full")
        channel.queue_delete(f"{name}.idle")
        channel.exchange_delete(name)
        connection.close()


def test_a_notice_ends_the_calls_lost_with_their_tube_asyncio(amqp_url, noticed_namespace):
    name, queue = noticed_namespace

    async def main():
        async with AsyncAuthqClient(amqp_url, namespace=name, timeout=60) as client:
            notice = asyncio.get_running_loop().run_in_executor(None, send_notice_once_queued, amqp_url, name, queue, ["ping"])
            with pytest.raises(ConnectionLostError):
                await client.ping()
            await notice

    run(main())
