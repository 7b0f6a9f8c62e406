/** AuthqClient's own behaviour: typed replies, error codes, retries by message id, calls in
 * parallel, and the conditions a caller observes on the broker, against the real broker. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import amqp from "amqplib";
import type { Channel, ChannelModel } from "amqplib";
import {
  AuthqClient,
  AuthqError,
  ConnectError,
  ConnectionLostError,
  NoDeploymentError,
  OverloadedError,
  ServerError,
  TimeoutError,
  UnroutableError,
} from "../src/index.js";
import { AMQP_URL, namespace } from "./env.js";

const PASSWORD = "correct horse battery";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const freshEmail = (name = "ann") => `${name}-${randomUUID().slice(0, 12)}@example.com`;

async function activeUser(client: AuthqClient, email: string): Promise<string> {
  const reg = await client.register(email);
  await client.confirmRegistration(email, reg.code, PASSWORD);
  return reg.user_id;
}

/** The current RFC 6238 time step (30 s). */
const currentStep = () => Math.floor(Date.now() / 30_000);

/** The RFC 6238 code (HMAC-SHA1, 6 digits, 30 s) of the base32 `secret` at time step `step`, as
 * an authenticator app computes it. */
function totp(secret: string, step: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const digest = createHmac("sha1", key).update(counter).digest();
  const offset = digest[digest.length - 1]! & 0x0f;
  return String((digest.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

describe("AuthqClient against a pool", () => {
  const client = new AuthqClient(AMQP_URL, { namespace: namespace(), timeoutMs: 20_000 });
  after(() => client.close());

  test("typed lifecycle", async () => {
    const email = freshEmail();
    const reg = await client.register(email, { name: "Ann" });
    assert.equal(reg.code.length, 8);
    const confirmed = await client.confirmRegistration(email, reg.code, PASSWORD);
    assert.equal(confirmed.user.state, "active");
    assert.deepEqual(confirmed.user.profile, { name: "Ann" });
    const login = await client.login(email, PASSWORD, "192.0.2.7");
    assert.equal(login.user.id, reg.user_id);
    const me = await client.check(login.session);
    assert.equal(me.user.email, email);
    assert.equal(me.renewed, false);
    assert.deepEqual((await client.setProfile(login.session, { tz: "UTC" })).user.profile, { name: "Ann", tz: "UTC" });
    assert.equal((await client.getProfile(login.session)).user.profile.tz, "UTC");
    const phone = await client.login(email, PASSWORD, { clientIp: "192.0.2.8", userAgent: "Phone/1.0" });
    const listed = await client.listSessions(login.session);
    assert.equal(listed.total, 2);
    assert.deepEqual(listed.sessions.map((s) => s.current), [false, true]);
    const newest = listed.sessions[0]!;
    assert.equal(newest.user_agent, "Phone/1.0");
    assert.equal(newest.client_ip, "192.0.2.8");
    await assert.rejects(client.endSession(login.session, "0".repeat(32)), (e: unknown) => {
      assert.ok(e instanceof ServerError);
      assert.equal(e.code, "session_not_found");
      return true;
    });
    await client.endSession(login.session, newest.id);
    await assert.rejects(client.check(phone.session), (e: unknown) => e instanceof ServerError && e.code === "session_invalid");
    assert.equal((await client.logoutAll(login.session)).ended, 1);
    assert.equal((await client.suspend({ email })).user.state, "suspended");
    assert.equal((await client.unsuspend({ user_id: reg.user_id })).user.state, "active");
    assert.equal((await client.deleteUser({ user_id: reg.user_id })).user_id, reg.user_id);
    await client.ping();
  });

  test("the second factor", async () => {
    const email = freshEmail();
    const userId = await activeUser(client, email);
    const { session } = await client.login(email, PASSWORD);
    const enrol = await client.mfaEnroll(session);
    assert.equal(enrol.digits, 6);
    assert.equal(enrol.period, 30);
    assert.ok(enrol.uri.startsWith("otpauth://totp/") && enrol.uri.includes(`secret=${enrol.secret}`));
    const step = currentStep();
    const confirmed = await client.mfaConfirm(session, totp(enrol.secret, step));
    assert.equal(confirmed.recovery_codes.length, 10);
    const pending = async (): Promise<string> => {
      try {
        await client.login(email, PASSWORD);
      } catch (e) {
        assert.ok(e instanceof ServerError && e.code === "mfa_required" && e.mfa !== undefined, String(e));
        assert.ok(e.mfa.expires_at > Date.now());
        return e.mfa.handle;
      }
      assert.fail("login opened a session without the second factor");
    };
    // The step after the confirming one: the worker accepts the next step's code (clock drift)
    // and each step's code only once, so this is the one fresh code to hand.
    const login = await client.mfaVerify(await pending(), totp(enrol.secret, step + 1));
    assert.equal(login.user.id, userId);
    assert.equal((await client.check(login.session)).user.email, email);
    const recovery = confirmed.recovery_codes[0]!;
    assert.equal((await client.mfaRecover(await pending(), recovery)).user.id, userId);
    const handle = await pending();
    await assert.rejects(client.mfaRecover(handle, recovery), (e: unknown) => e instanceof ServerError && e.code === "invalid_code");
    assert.equal((await client.mfaRecover(handle, confirmed.recovery_codes[1]!)).user.id, userId);
    await assert.rejects(client.mfaDisableWithCode(session, totp(enrol.secret, step)), (e: unknown) => e instanceof ServerError && e.code === "invalid_code");
    await assert.rejects(client.mfaDisableWithPassword(session, "not the password"), (e: unknown) => e instanceof ServerError && e.code === "invalid_credentials");
    await client.mfaDisableWithPassword(session, PASSWORD);
    assert.equal((await client.login(email, PASSWORD)).user.id, userId);
    await assert.rejects(client.mfaDisableWithPassword(session, PASSWORD), (e: unknown) => e instanceof ServerError && e.code === "mfa_not_enabled");
  });

  test("the second factor turned off with a code", async () => {
    const email = freshEmail();
    await activeUser(client, email);
    const { session } = await client.login(email, PASSWORD);
    const enrol = await client.mfaEnroll(session);
    const step = currentStep();
    await client.mfaConfirm(session, totp(enrol.secret, step));
    await client.mfaDisableWithCode(session, totp(enrol.secret, step + 1));
    await client.login(email, PASSWORD);
  });

  test("error replies reject with the protocol code", async () => {
    await assert.rejects(client.check("no-such-session"), (e: unknown) => {
      assert.ok(e instanceof ServerError && e instanceof AuthqError);
      assert.equal(e.code, "session_invalid");
      return true;
    });
    await assert.rejects(client.call("no_such_operation", {}), (e: unknown) => e instanceof AuthqError && e.code === "unknown_operation");
    const email = freshEmail();
    await activeUser(client, email);
    await assert.rejects(client.login(email, "wrong password"), (e: unknown) => {
      assert.ok(e instanceof ServerError);
      assert.equal(e.code, "invalid_credentials");
      assert.ok(!String(e.message).includes("wrong password"));
      return true;
    });
  });

  test("a retry with the same message id gets the first reply", async () => {
    const email = freshEmail();
    const messageId = randomUUID();
    const first = await client.register(email, undefined, { messageId });
    const again = await client.register(email, undefined, { messageId });
    assert.equal(again.code, first.code);
    await assert.rejects(client.register(freshEmail(), undefined, { messageId }), (e: unknown) => e instanceof ServerError && e.code === "idempotency_conflict");
  });

  test("many calls in flight on one connection", async () => {
    const email = freshEmail();
    await activeUser(client, email);
    const { session } = await client.login(email, PASSWORD);
    const checks = await Promise.all(Array.from({ length: 50 }, () => client.check(session)));
    assert.ok(checks.every((c) => c.user.email === email));
  });
});

describe("conditions seen on the broker", () => {
  let connection: ChannelModel;
  let channel: Channel;
  let bare: string;

  before(async () => {
    connection = await amqp.connect(AMQP_URL);
    channel = await connection.createChannel();
  });
  after(async () => {
    await connection.close();
  });

  async function bareNamespace(): Promise<string> {
    bare = `authq-ts-${randomUUID().slice(0, 12)}`;
    await channel.assertExchange(bare, "direct", { durable: false, autoDelete: false });
    return bare;
  }

  test("unroutable", async () => {
    const ns = await bareNamespace();
    const c = new AuthqClient(AMQP_URL, { namespace: ns });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof UnroutableError && e.code === "unroutable");
    await c.close();
    await channel.deleteExchange(ns);
  });

  test("overloaded", async () => {
    const ns = await bareNamespace();
    const q = `${ns}.full`;
    await channel.assertQueue(q, { autoDelete: true, arguments: { "x-max-length": 0, "x-overflow": "reject-publish" } });
    await channel.bindQueue(q, ns, "ping");
    const c = new AuthqClient(AMQP_URL, { namespace: ns });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof OverloadedError && e.code === "overloaded" && e.retryable);
    await c.close();
    await channel.deleteQueue(q);
    await channel.deleteExchange(ns);
  });

  test("the timeout travels as expiration and x-deadline", async () => {
    const ns = await bareNamespace();
    const q = `${ns}.tube`;
    await channel.assertQueue(q, { autoDelete: true });
    await channel.bindQueue(q, ns, "ping");
    let seen: amqp.ConsumeMessage | undefined;
    let seenAt = 0;
    await channel.consume(q, (msg) => {
      if (!msg) return;
      seen = msg;
      seenAt = Date.now();
      channel.sendToQueue(msg.properties.replyTo, Buffer.from('{"status":"ok","data":{}}'), { correlationId: msg.properties.correlationId });
    }, { noAck: true });
    const c = new AuthqClient(AMQP_URL, { namespace: ns, timeoutMs: 15_000 });
    await c.ping({ messageId: "my-request-1" });
    await c.close();
    assert.ok(seen);
    assert.equal(seen.properties.messageId, "my-request-1");
    const expiration = Number(seen.properties.expiration);
    assert.ok(expiration > 0 && expiration <= 15_000, String(expiration));
    const deadline = Number(seen.properties.headers?.["x-deadline"]);
    assert.ok(deadline > seenAt - 1 && deadline <= seenAt + 15_000, String(deadline));
    assert.equal(seen.properties.userId, "guest");
    assert.match(String(seen.properties.replyTo), /^amq\.gen-/);
    await channel.deleteQueue(q);
    await channel.deleteExchange(ns);
  });

  test("no reply is a timeout", async () => {
    const ns = await bareNamespace();
    const q = `${ns}.nobody`;
    await channel.assertQueue(q, { autoDelete: true });
    await channel.bindQueue(q, ns, "ping");
    const c = new AuthqClient(AMQP_URL, { namespace: ns, timeoutMs: 500 });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof TimeoutError && e.code === "timeout");
    await c.close();
    await channel.deleteQueue(q);
    await channel.deleteExchange(ns);
  });

  test("a notice ends the calls lost with their tube", async () => {
    const ns = await bareNamespace();
    const q = `${ns}.nobody`;
    await channel.assertExchange(`${ns}.notices`, "fanout", { durable: false, autoDelete: false });
    await channel.assertQueue(q, { autoDelete: true });
    await channel.bindQueue(q, ns, "ping");
    // A long timeout: without the notice the call would end in TimeoutError, a minute on.
    const c = new AuthqClient(AMQP_URL, { namespace: ns, timeoutMs: 60_000 });
    const call = c.ping();
    call.catch(() => {});
    // Stands in for a worker that declared a lost tube anew, once the request waits in the queue.
    for (let i = 0; i < 400 && (await channel.checkQueue(q)).messageCount === 0; i++) await sleep(50);
    const notice = { tube: "session", operations: ["ping", "check"] };
    channel.publish(`${ns}.notices`, "", Buffer.from(JSON.stringify(notice)), { type: "authq.tube_declared" });
    await assert.rejects(call, (e: unknown) => e instanceof ConnectionLostError && e.code === "connection_lost");
    await c.close();
    await channel.deleteQueue(q);
    await channel.deleteExchange(`${ns}.notices`);
    await channel.deleteExchange(ns);
  });

  test("no deployment", async () => {
    const c = new AuthqClient(AMQP_URL, { namespace: `authq-none-${randomUUID().slice(0, 8)}` });
    await assert.rejects(c.ping(), (e: unknown) => e instanceof NoDeploymentError && e.code === "no_deployment");
    await c.close();
  });

  test("connect errors say which", async () => {
    const wrong = new AuthqClient("amqp://guest:not-the-password@127.0.0.1:5672/%2f", { timeoutMs: 5_000 });
    await assert.rejects(wrong.ping(), (e: unknown) => {
      assert.ok(e instanceof ConnectError, String(e));
      assert.equal(e.code, "access_refused");
      assert.ok(!e.message.includes("not-the-password"));
      return true;
    });
    const unreachable = new AuthqClient("amqp://guest:guest@127.0.0.1:1/%2f", { timeoutMs: 5_000 });
    await assert.rejects(unreachable.ping(), (e: unknown) => e instanceof ConnectError && e.code === "connect" && e.retryable);
  });
});
