"""AuthqClient's own behaviour: typed replies, error codes, retries by message_id, threads,
and the conditions a caller observes on the broker (unroutable, overloaded, no deployment,
timeout, connect errors), each against the real broker."""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import struct
import threading
import time
import uuid

import pika
import pytest

from authq_client import (
    AuthqClient,
    AuthqError,
    AuthqTimeoutError,
    ConnectError,
    ConnectionLostError,
    LoginResult,
    MfaConfirmResult,
    MfaEnrollResult,
    NoDeploymentError,
    OverloadedError,
    ServerError,
    UnroutableError,
)

PASSWORD = "correct horse battery"


def fresh_email(name="ann"):
    return f"{name}-{uuid.uuid4().hex[:12]}@example.com"


def active_user(client, email):
    reg = client.register(email)
    client.confirm_registration(email, reg.code, PASSWORD)
    return reg.user_id


def totp(secret, step=None):
    """The RFC 6238 code (HMAC-SHA1, 6 digits, 30 s) of the base32 ``secret`` at time step
    ``step`` (default the current one), as an authenticator app computes it."""
    if step is None:
        step = current_step()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def current_step():
    return int(time.time()) // 30


def mfa_handle(client, email, password=PASSWORD):
    """The pending handle of a login that needs the second factor."""
    with pytest.raises(ServerError) as e:
        client.login(email, password)
    assert e.value.code == "mfa_required", e.value
    assert e.value.mfa["expires_at"] > time.time() * 1000
    return e.value.mfa["handle"]


def test_typed_lifecycle(client):
    email = fresh_email()
    reg = client.register(email, profile={"name": "Ann"})
    assert len(reg.code) == 8 and reg.expires_at > 0
    confirmed = client.confirm_registration(email, reg.code, PASSWORD)
    assert confirmed.user.state == "active" and confirmed.user.profile == {"name": "Ann"}
    login = client.login(email, PASSWORD, client_ip="192.0.2.7")
    assert isinstance(login, LoginResult) and login.user.id == reg.user_id
    me = client.check(login.session)
    assert me.user.email == email and me.renewed is False and me.session_epoch == 0
    assert client.set_profile(login.session, {"tz": "UTC"}).user.profile == {"name": "Ann", "tz": "UTC"}
    assert client.get_profile(login.session).user.profile["tz"] == "UTC"
    phone = client.login(email, PASSWORD, client_ip="192.0.2.8", user_agent="Phone/1.0")
    listed = client.list_sessions(login.session)
    assert listed.total == 2 and [s.current for s in listed.sessions] == [False, True]
    newest = listed.sessions[0]
    assert newest.user_agent == "Phone/1.0" and newest.client_ip == "192.0.2.8"
    with pytest.raises(ServerError) as e:
        client.end_session(login.session, "0" * 32)
    assert e.value.code == "session_not_found"
    client.end_session(login.session, newest.id)
    with pytest.raises(ServerError) as e:
        client.check(phone.session)
    assert e.value.code == "session_invalid"
    assert client.logout_all(login.session).ended == 1
    suspended = client.suspend(email=email)
    assert suspended.user.state == "suspended"
    assert client.unsuspend(user_id=reg.user_id).user.state == "active"
    assert client.delete_user(user_id=reg.user_id).user_id == reg.user_id
    client.ping()


def test_the_second_factor(client):
    """Enrol, confirm with a code, log in through mfa_verify with a code and with a recovery
    code (which works once), and turn it off with the password."""
    email = fresh_email()
    active_user(client, email)
    session = client.login(email, PASSWORD).session
    enrol = client.mfa_enroll(session)
    assert isinstance(enrol, MfaEnrollResult) and (enrol.digits, enrol.period) == (6, 30)
    assert enrol.uri.startswith("otpauth://totp/") and f"secret={enrol.secret}" in enrol.uri
    assert enrol.secret not in repr(enrol)
    with pytest.raises(ServerError) as e:
        client.mfa_confirm(session, "000000" if totp(enrol.secret) != "000000" else "111111")
    assert e.value.code == "invalid_code"
    step = current_step()
    confirmed = client.mfa_confirm(session, totp(enrol.secret, step))
    assert isinstance(confirmed, MfaConfirmResult) and len(confirmed.recovery_codes) == 10
    assert confirmed.recovery_codes[0] not in repr(confirmed)
    with pytest.raises(ServerError) as e:
        client.mfa_enroll(session)
    assert e.value.code == "mfa_enabled"

    # The step after the confirming one: the worker accepts the next step's code (clock
    # drift), and each step's code only once, so this is the one fresh code to hand.
    login = client.mfa_verify(mfa_handle(client, email), totp(enrol.secret, step + 1))
    assert isinstance(login, LoginResult) and login.user.email == email
    assert client.check(login.session).user.email == email

    recovery = confirmed.recovery_codes[0]
    by_recovery = client.mfa_verify(mfa_handle(client, email), recovery_code=recovery)
    assert by_recovery.user.email == email
    handle = mfa_handle(client, email)
    with pytest.raises(ServerError) as e:
        client.mfa_verify(handle, recovery_code=recovery)
    assert e.value.code == "invalid_code"
    # A wrong code leaves the handle usable; its case and dashes do not matter.
    again = client.mfa_verify(handle, recovery_code=confirmed.recovery_codes[1].upper().replace("-", ""))
    assert again.user.email == email
    with pytest.raises(ServerError) as e:
        client.mfa_verify(handle, recovery_code=confirmed.recovery_codes[2])
    assert e.value.code == "invalid_code"
    with pytest.raises(ValueError):
        client.mfa_verify(handle)
    with pytest.raises(ValueError):
        client.mfa_disable(session, code="123456", password=PASSWORD)

    with pytest.raises(ServerError) as e:
        client.mfa_disable(session, password="not the password")
    assert e.value.code == "invalid_credentials"
    assert client.mfa_disable(session, password=PASSWORD) is None
    assert client.login(email, PASSWORD).user.email == email
    with pytest.raises(ServerError) as e:
        client.mfa_disable(session, password=PASSWORD)
    assert e.value.code == "mfa_not_enabled"


def test_secrets_stay_out_of_repr(client):
    email = fresh_email()
    reg = client.register(email)
    assert reg.code not in repr(reg)
    client.confirm_registration(email, reg.code, PASSWORD)
    login = client.login(email, PASSWORD)
    assert login.session not in repr(login)
    with pytest.raises(ServerError) as e:
        client.login(email, "wrong password")
    assert "wrong password" not in str(e.value)


def test_error_replies_raise_with_the_protocol_code(client):
    with pytest.raises(ServerError) as e:
        client.check("no-such-session")
    assert isinstance(e.value, AuthqError)
    assert e.value.code == "session_invalid"
    assert e.value.message == "the session is invalid or expired"
    with pytest.raises(AuthqError) as e:
        client.call("no_such_operation", {})
    assert e.value.code == "unknown_operation"
    with pytest.raises(ValueError):
        client.suspend()


def test_a_retry_with_the_same_message_id_gets_the_first_reply(client):
    email = fresh_email()
    message_id = str(uuid.uuid4())
    first = client.register(email, message_id=message_id)
    again = client.register(email, message_id=message_id)
    assert again.code == first.code
    with pytest.raises(ServerError) as e:
        client.register(fresh_email(), message_id=message_id)
    assert e.value.code == "idempotency_conflict"


def test_one_client_serves_many_threads(amqp_url, namespace):
    client = AuthqClient(amqp_url, namespace=namespace, timeout=20)
    email = fresh_email()
    active_user(client, email)
    session = client.login(email, PASSWORD).session
    seen = set()

    def work(_):
        seen.add(threading.get_ident())
        for _ in range(5):
            assert client.check(session).user.email == email
        return True

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        assert all(pool.map(work, range(24)))
    assert 1 < len(client._links) <= 7
    client.close()
    assert client._links == []
    client.ping()  # reconnects
    client.close()


def test_unroutable(amqp_url, bare_namespace):
    name, _ = bare_namespace
    with AuthqClient(amqp_url, namespace=name) as client:
        with pytest.raises(UnroutableError) as e:
            client.ping()
        assert e.value.code == "unroutable"


def test_overloaded(amqp_url, bare_namespace):
    name, channel = bare_namespace
    queue = f"{name}.full"
    channel.queue_declare(queue, auto_delete=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    channel.queue_bind(queue, name, "ping")
    with AuthqClient(amqp_url, namespace=name) as client:
        with pytest.raises(OverloadedError) as e:
            client.ping()
        assert e.value.code == "overloaded" and e.value.retryable
    channel.queue_delete(queue)


def test_the_timeout_travels_as_expiration_and_deadline(amqp_url, bare_namespace):
    """A stand-in worker reads the request off the queue and answers it."""
    name, channel = bare_namespace
    queue = f"{name}.tube"
    channel.queue_declare(queue, auto_delete=True)
    channel.queue_bind(queue, name, "ping")
    seen = {}

    def answer():
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        ch = connection.channel()
        for _ in range(400):
            method, properties, body = ch.basic_get(queue, auto_ack=True)
            if method:
                seen.update(properties=properties, body=body, at=time.time())
                ch.basic_publish("", properties.reply_to, b'{"status":"ok","data":{}}', pika.BasicProperties(correlation_id=properties.correlation_id))
                break
            connection.sleep(0.05)
        connection.close()

    worker = threading.Thread(target=answer)
    worker.start()
    with AuthqClient(amqp_url, namespace=name, timeout=15) as client:
        client.ping(message_id="my-request-1")
    worker.join()
    properties = seen["properties"]
    assert properties.message_id == "my-request-1"
    assert 0 < int(properties.expiration) <= 15_000
    deadline = properties.headers["x-deadline"]
    assert seen["at"] * 1000 < deadline <= (seen["at"] + 15) * 1000
    assert properties.headers["x-authq-protocol"] == 1
    assert properties.reply_to.startswith("amq.gen-")
    assert properties.user_id == "guest" or properties.user_id
    assert json.loads(seen["body"]) == {}
    channel.queue_delete(queue)


def test_no_reply_is_a_timeout(amqp_url, bare_namespace):
    name, channel = bare_namespace
    queue = f"{name}.nobody"
    channel.queue_declare(queue, auto_delete=True)
    channel.queue_bind(queue, name, "ping")
    with AuthqClient(amqp_url, namespace=name, timeout=0.5) as client:
        with pytest.raises(AuthqTimeoutError) as e:
            client.ping()
        assert e.value.code == "timeout" and e.value.retryable
    channel.queue_delete(queue)


def test_no_deployment(amqp_url):
    with AuthqClient(amqp_url, namespace=f"authq-none-{uuid.uuid4().hex[:8]}") as client:
        with pytest.raises(NoDeploymentError) as e:
            client.ping()
        assert e.value.code == "no_deployment"


def test_connect_errors_say_which(amqp_url):
    wrong = AuthqClient("amqp://guest:not-the-password@127.0.0.1:5672/%2f", timeout=5)
    with pytest.raises(ConnectError) as e:
        wrong.ping()
    assert e.value.code == "access_refused" and not e.value.retryable
    assert "not-the-password" not in str(e.value)
    unreachable = AuthqClient("amqp://guest:guest@127.0.0.1:1/%2f", timeout=5)
    with pytest.raises(ConnectError) as e:
        unreachable.ping()
    assert e.value.code == "connect" and e.value.retryable


def test_typed_results_cover_the_reply_schemas():
    """Each dataclass has every property of its reply schema, and requires what it requires."""
    import dataclasses
    import pathlib

    import authq_client as a

    schemas = pathlib.Path(__file__).resolve().parents[3] / "protocol/schema/replies"
    types = {
        "register": a.RegisterResult, "confirm_registration": a.ConfirmRegistrationResult,
        "login": a.LoginResult, "check": a.CheckResult, "logout_all": a.LogoutAllResult,
        "start_reset": a.StartResetResult, "complete_reset": a.CompleteResetResult,
        "change_password": a.ChangePasswordResult, "get_profile": a.ProfileResult,
        "set_profile": a.ProfileResult, "delete_user": a.DeleteUserResult,
        "suspend": a.UserStateResult, "unsuspend": a.UserStateResult,
        "social_url": a.SocialUrlResult, "social_login": a.SocialLoginResult,
        "link_social": a.LinkSocialResult, "deletion_done": a.DeletionStatus,
        "deletion_status": a.DeletionStatus, "list_sessions": a.ListSessionsResult,
        "mfa_enroll": a.MfaEnrollResult, "mfa_confirm": a.MfaConfirmResult,
        "mfa_verify": a.LoginResult,
        "jwks": a.JwksResult, "refresh": a.RefreshResult,
        "create_service_client": a.ServiceClientResult,
        "rotate_service_client_secret": a.ServiceClientResult,
        "service_token": a.ServiceTokenResult,
        "list_service_clients": a.ServiceClientListResult,
    }
    empty = {"ping", "logout", "end_session", "mfa_disable", "revoke_service_client"}
    # `authq user`'s administrative operations: this client has no typed method for them (its
    # `call` reaches them untyped).
    admin = {"list_users", "get_user", "import_users", "end_user_sessions", "reset_mfa"}
    assert {p.stem for p in schemas.glob("*.json")} == set(types) | empty | admin
    for op, cls in types.items():
        schema = json.loads((schemas / f"{op}.json").read_text())
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(schema["properties"]) == set(fields), op
        required = {n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        assert set(schema.get("required", [])) == required, op
    user = json.loads((schemas / "check.json").read_text())["$defs"]["UserInfo"]
    assert set(user["properties"]) == {f.name for f in dataclasses.fields(a.User)}
    summary = json.loads((schemas / "list_sessions.json").read_text())["$defs"]["SessionSummary"]
    assert set(summary["properties"]) == {f.name for f in dataclasses.fields(a.SessionSummary)}


def send_notice_once_queued(amqp_url, name, queue, operations):
    """Stands in for a worker that declared a lost tube anew: once the call's request waits in
    ``queue`` (nobody consumes it), publishes a ``tube_declared`` notice naming ``operations``."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for _ in range(400):
        if channel.queue_declare(queue, passive=True).method.message_count:
            break
        connection.sleep(0.05)
    body = json.dumps({"tube": "session", "operations": operations}).encode()
    channel.basic_publish(f"{name}.notices", "", body, pika.BasicProperties(type="authq.tube_declared"))
    connection.close()


def test_a_notice_ends_the_calls_lost_with_their_tube(amqp_url, noticed_namespace):
    name, queue = noticed_namespace
    notice = threading.Thread(target=send_notice_once_queued, args=(amqp_url, name, queue, ["ping", "check"]))
    notice.start()
    # A long timeout: without the notice the call would end in AuthqTimeoutError, a minute on.
    with AuthqClient(amqp_url, namespace=name, timeout=60) as client:
        with pytest.raises(ConnectionLostError) as e:
            client.ping()
        assert e.value.code == "connection_lost" and e.value.retryable
    notice.join()
