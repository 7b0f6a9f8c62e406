/**
 * `AuthqClient`: calls authq over RabbitMQ with amqplib.
 *
 * One client is one connection with one confirm channel and one exclusive, server-named reply
 * queue, opened on the first call; any number of calls may be in flight at once (replies are
 * matched by correlation id). When the connection drops, calls in flight fail with
 * `ConnectionLostError` and the next call reconnects.
 */
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from "amqplib";
import {
  AuthqError,
  ConnectError,
  ConnectionLostError,
  NoDeploymentError,
  OverloadedError,
  ServerError,
  TimeoutError,
  UnroutableError,
} from "./errors.js";
import type {
  ChangePasswordResult,
  CheckResult,
  CompleteResetResult,
  ConfirmRegistrationResult,
  DeleteUserResult,
  DeletionStatus,
  Envelope,
  LinkSocialResult,
  ListSessionsResult,
  LoginDevice,
  LoginResult,
  LogoutAllResult,
  MfaConfirmResult,
  MfaEnrollResult,
  ProfileResult,
  RegisterResult,
  SocialLoginResult,
  SocialUrlResult,
  StartResetResult,
  UserRef,
  UserStateResult,
} from "./types.js";

/** The protocol version this client speaks (header `x-authq-protocol`). */
export const PROTOCOL_VERSION = 1;

/** How a client connects and calls. */
export interface ClientOptions {
  /** The deployment's namespace (default `authq`). */
  namespace?: string;
  /**
   * Milliseconds each call waits for its reply, all attempts included (default 10000). Also
   * sent as the request's `expiration` and `x-deadline`; also bounds connecting.
   */
  timeoutMs?: number;
  /**
   * How many times a call is published before it gives up (default 1). With more, a call that
   * got no reply, lost its connection or was refused by a full tube is published again with
   * the same `messageId`, which the worker answers from the first outcome.
   */
  attempts?: number;
  /** Sent as every request's `user_id` (checked by RabbitMQ); default: the URL's user. */
  userId?: string | null;
  /** The connection name shown in RabbitMQ's management tools. */
  connectionName?: string;
}

/** Per-call options. */
export interface CallOptions {
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
  /** The request's `message_id` (default a fresh UUID): pass the same one to retry safely. */
  messageId?: string;
}

/** Options of `callRaw`, for tests of the protocol itself. */
export interface RawCallOptions extends CallOptions {
  /** An absolute deadline (Unix ms) to send instead of now + timeout; then no `expiration`. */
  deadlineMs?: number;
  /** `false` leaves out the `user_id` property. */
  sendUserId?: boolean;
}

interface Waiter {
  resolve: (body: Buffer) => void;
  reject: (error: Error) => void;
  /** The call's operation: a `tube_declared` notice naming it ends the call. */
  operation: string;
}

/** The AMQP `type` of a worker's notice that it declared a lost tube anew (PROTOCOL.md §8). */
export const TUBE_DECLARED = "authq.tube_declared";

class Link {
  readonly returned = new Set<string>();
  readonly waiters = new Map<string, Waiter>();
  closed = false;

  constructor(
    readonly connection: ChannelModel,
    readonly channel: ConfirmChannel,
    readonly replyQueue: string,
  ) {}

  /** Ends every call of one of `operations`: its request may have been lost with its tube. */
  release(operations: string[]): void {
    for (const [id, waiter] of this.waiters) {
      if (!operations.includes(waiter.operation)) continue;
      this.waiters.delete(id);
      waiter.reject(new ConnectionLostError("the request's tube was lost"));
    }
  }

  fail(error: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.waiters.values()) waiter.reject(error);
    this.waiters.clear();
  }
}

function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/i, "$1:***@");
}

function urlUser(url: string): string {
  try {
    const user = decodeURIComponent(new URL(url).username);
    return user || "guest";
  } catch {
    return "guest";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A client of one authq deployment. */
export class AuthqClient {
  readonly namespace: string;
  readonly timeoutMs: number;
  readonly attempts: number;
  private readonly userId: string | null;
  private readonly connectionName: string;
  private link: Promise<Link> | null = null;

  /** `url`: the broker, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`. Connects lazily. */
  constructor(
    private readonly url: string,
    options: ClientOptions = {},
  ) {
    this.namespace = options.namespace ?? "authq";
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.attempts = Math.max(1, options.attempts ?? 1);
    this.userId = options.userId === undefined ? urlUser(url) : options.userId;
    this.connectionName = options.connectionName ?? "authq-typescript";
  }

  /** Connects now instead of on the first call (to fail early on a wrong URL). */
  async connect(): Promise<void> {
    await this.getLink(this.timeoutMs);
  }

  /** Closes the connection; calls in flight fail with `ConnectionLostError`. */
  async close(): Promise<void> {
    const link = this.link;
    this.link = null;
    if (!link) return;
    try {
      const l = await link;
      l.fail(new ConnectionLostError("the client was closed"));
      await l.connection.close();
    } catch {
      // already gone
    }
  }

  private getLink(timeoutMs: number): Promise<Link> {
    if (this.link) return this.link;
    const opening = this.open(timeoutMs);
    this.link = opening;
    opening.then(
      (l) => {
        const drop = () => {
          l.fail(new ConnectionLostError());
          if (this.link === opening) this.link = null;
        };
        l.connection.on("close", drop);
        l.connection.on("error", drop);
        l.channel.on("close", drop);
      },
      () => {
        if (this.link === opening) this.link = null;
      },
    );
    return opening;
  }

  private async open(timeoutMs: number): Promise<Link> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ConnectError("connect", redact(this.url), `no connection within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.openUnbounded(timeoutMs), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async openUnbounded(timeoutMs: number): Promise<Link> {
    let connection: ChannelModel;
    try {
      connection = await amqp.connect(this.url, {
        timeout: timeoutMs,
        clientProperties: { connection_name: this.connectionName },
      });
    } catch (e) {
      const text = String((e as Error)?.message ?? e);
      if (/ACCESS[-_]REFUSED|NOT[-_]ALLOWED|403|530/.test(text)) {
        throw new ConnectError(
          "access_refused",
          redact(this.url),
          "the broker refused the credentials or the virtual host",
        );
      }
      const code = (e as NodeJS.ErrnoException)?.code;
      throw new ConnectError("connect", redact(this.url), `cannot reach the broker (${code ?? text})`);
    }
    connection.on("error", () => {
      // reported through "close"
    });
    try {
      const probe: Channel = await connection.createChannel();
      probe.on("error", () => {});
      try {
        await probe.checkExchange(this.namespace);
        await probe.close();
      } catch (e) {
        if (/404|NOT_FOUND/.test(String((e as Error).message))) throw new NoDeploymentError(this.namespace);
        throw e;
      }
      const channel = await connection.createConfirmChannel();
      channel.on("error", () => {});
      const { queue } = await channel.assertQueue("", { exclusive: true, autoDelete: true });
      const link = new Link(connection, channel, queue);
      channel.on("return", (msg: ConsumeMessage) => {
        if (msg.properties.correlationId) link.returned.add(String(msg.properties.correlationId));
      });
      await channel.consume(
        queue,
        (msg) => {
          if (!msg) return link.fail(new ConnectionLostError("the reply consumer was cancelled"));
          if (msg.properties.type === TUBE_DECLARED) {
            try {
              const notice = JSON.parse(msg.content.toString("utf8")) as { operations?: unknown };
              if (Array.isArray(notice.operations)) link.release(notice.operations.map(String));
            } catch {
              // an unreadable notice is dropped
            }
            return;
          }
          const waiter = link.waiters.get(String(msg.properties.correlationId));
          if (waiter) {
            link.waiters.delete(String(msg.properties.correlationId));
            waiter.resolve(msg.content);
          }
        },
        { noAck: true, exclusive: true },
      );
      // Notices, on a channel of their own: a refused bind (an older deployment, a user without
      // the permission) closes only that channel, and calls lost with a tube end at their timeout.
      const binder: Channel = await connection.createChannel();
      binder.on("error", () => {});
      try {
        await binder.bindQueue(queue, `${this.namespace}.notices`, "");
        await binder.close();
      } catch {
        // no notices
      }
      return link;
    } catch (e) {
      await connection.close().catch(() => {});
      throw e;
    }
  }

  private publish(
    link: Link,
    operation: string,
    body: Buffer,
    correlationId: string,
    messageId: string,
    remainingMs: number,
    deadlineMs: number,
    expiration: boolean,
    sendUserId: boolean,
  ): Promise<void> {
    const options: Options.Publish = {
      mandatory: true,
      contentType: "application/json",
      replyTo: link.replyQueue,
      correlationId,
      messageId,
      deliveryMode: 2,
      headers: {
        "x-deadline": { "!": "int64", value: deadlineMs },
        "x-authq-protocol": { "!": "int32", value: PROTOCOL_VERSION },
      },
    };
    if (expiration) options.expiration = String(Math.max(1, Math.floor(remainingMs)));
    if (sendUserId && this.userId) options.userId = this.userId;
    return new Promise<void>((resolve, reject) => {
      try {
        link.channel.publish(this.namespace, operation, body, options, (err) => {
          if (err) {
            if (link.closed) reject(new ConnectionLostError());
            else reject(new OverloadedError(operation));
          } else if (link.returned.delete(correlationId)) {
            reject(new UnroutableError(operation));
          } else {
            resolve();
          }
        });
      } catch (e) {
        reject(new ConnectionLostError(String((e as Error).message)));
      }
    });
  }

  /**
   * Publishes `body` (a Buffer sent as is, or an object encoded as JSON) as a request for
   * `operation` (any routing key) and returns the reply envelope, decoded but not
   * interpreted. Rejects with `TimeoutError`, `ConnectionLostError`, `OverloadedError`,
   * `UnroutableError`, `NoDeploymentError` or `ConnectError`.
   */
  async callRaw(operation: string, body: Buffer | object, options: RawCallOptions = {}): Promise<Envelope> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const payload = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const messageId = options.messageId ?? randomUUID();
    const started = Date.now();
    const end = started + timeoutMs;
    const expiration = options.deadlineMs === undefined;
    const deadlineMs = options.deadlineMs ?? started + timeoutMs;
    const sendUserId = options.sendUserId ?? true;
    const correlationId = randomUUID();
    let pending: Promise<Buffer> | null = null;
    let pendingLink: Link | null = null;
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= this.attempts;
      const remaining = end - Date.now();
      if (remaining <= 0) throw new TimeoutError(timeoutMs);
      try {
        const link = await this.getLink(remaining);
        if (!pending || pendingLink !== link) {
          pendingLink = link;
          pending = new Promise<Buffer>((resolve, reject) => {
            link.waiters.set(correlationId, { resolve, reject, operation });
          });
          pending.catch(() => {});
        }
        await this.publish(link, operation, payload, correlationId, messageId, remaining, deadlineMs, expiration, sendUserId);
        // Each attempt waits for an equal share of what is left.
        const wait = (end - Date.now()) / (this.attempts - attempt + 1);
        let timer: NodeJS.Timeout | undefined;
        const reply = await Promise.race([
          pending,
          new Promise<null>((resolve) => {
            timer = setTimeout(() => resolve(null), Math.max(0, wait));
          }),
        ]).finally(() => clearTimeout(timer));
        if (reply) return JSON.parse(reply.toString("utf8")) as Envelope;
        if (last) {
          link.waiters.delete(correlationId);
          throw new TimeoutError(timeoutMs);
        }
      } catch (e) {
        if (!(e instanceof AuthqError) || last || !e.retryable || e instanceof TimeoutError) {
          pendingLink?.waiters.delete(correlationId);
          throw e;
        }
        if (e instanceof OverloadedError || e instanceof ConnectError) await sleep(Math.min(250, Math.max(0, end - Date.now())));
        // A call released by a notice (or its connection) waits on a new reply slot next time.
        if (e instanceof ConnectionLostError) pending = null;
      }
    }
  }

  /**
   * Calls `operation` and returns the reply's `data`; an error reply rejects with
   * `ServerError` whose `code` is the protocol's error code.
   */
  async call<T>(operation: string, body: object, options: CallOptions = {}): Promise<T> {
    const envelope = await this.callRaw(operation, body, options);
    if (envelope.status === "ok" && envelope.data && typeof envelope.data === "object") return envelope.data as T;
    const error = envelope.status === "error" ? envelope.error : undefined;
    throw new ServerError(error?.code ?? "internal", error?.message ?? "the reply envelope breaks the protocol", error?.mfa);
  }

  /** `ping`: a no-op round trip. */
  async ping(options?: CallOptions): Promise<void> {
    await this.call("ping", {}, options);
  }

  /** `register`: a pending user and the confirmation code to mail. Errors: `user_exists`, `too_many_attempts`. */
  register(email: string, profile?: Record<string, unknown>, options?: CallOptions): Promise<RegisterResult> {
    return this.call("register", profile === undefined ? { email } : { email, profile }, options);
  }

  /** `confirm_registration`: the user becomes active. Errors: `invalid_code`, `weak_password`. */
  confirmRegistration(email: string, code: string, password: string, options?: CallOptions): Promise<ConfirmRegistrationResult> {
    return this.call("confirm_registration", { email, code, password }, options);
  }

  /**
   * `login`: a new session. `device` is the end user's IP address, or `{ clientIp, userAgent }`
   * (kept with the session for `listSessions`; the user agent at most 512 bytes). Errors:
   * `invalid_credentials`, `user_suspended`, `too_many_attempts`, `policy_denied`, `bad_request`.
   */
  login(email: string, password: string, device?: string | LoginDevice, options?: CallOptions): Promise<LoginResult> {
    const { clientIp, userAgent } = typeof device === "string" ? { clientIp: device, userAgent: undefined } : (device ?? {});
    const body: Record<string, unknown> = { email, password };
    if (clientIp !== undefined) body.client_ip = clientIp;
    if (userAgent !== undefined) body.user_agent = userAgent;
    return this.call("login", body, options);
  }

  /** `check`: the session's user. Errors: `session_invalid`, `user_suspended`. */
  check(session: string, options?: CallOptions): Promise<CheckResult> {
    return this.call("check", { session }, options);
  }

  /** `logout`: ends the session. Errors: `session_invalid`. */
  async logout(session: string, options?: CallOptions): Promise<void> {
    await this.call("logout", { session }, options);
  }

  /** `logout_all`: ends every session of the session's user. */
  logoutAll(session: string, options?: CallOptions): Promise<LogoutAllResult> {
    return this.call("logout_all", { session }, options);
  }

  /** `list_sessions`: the live sessions of the session's user, newest first (never tokens). Errors: `session_invalid`, `user_suspended`. */
  listSessions(session: string, options?: CallOptions): Promise<ListSessionsResult> {
    return this.call("list_sessions", { session }, options);
  }

  /** `end_session`: ends one of the user's sessions by its id from `listSessions`. Errors: `session_invalid`, `session_not_found`. */
  async endSession(session: string, sessionId: string, options?: CallOptions): Promise<void> {
    await this.call("end_session", { session, session_id: sessionId }, options);
  }

  /** `start_reset` (administrative): a reset token to mail. Errors: `too_many_attempts`, `forbidden`. */
  startReset(email: string, options?: CallOptions): Promise<StartResetResult> {
    return this.call("start_reset", { email }, options);
  }

  /** `complete_reset`: a new password with the token; ends every session. Errors: `invalid_code`, `weak_password`. */
  completeReset(email: string, token: string, password: string, options?: CallOptions): Promise<CompleteResetResult> {
    return this.call("complete_reset", { email, token, password }, options);
  }

  /** `change_password`: ends the user's other sessions. Errors: `session_invalid`, `invalid_credentials`, `weak_password`. */
  changePassword(session: string, oldPassword: string, newPassword: string, options?: CallOptions): Promise<ChangePasswordResult> {
    return this.call("change_password", { session, old_password: oldPassword, new_password: newPassword }, options);
  }

  /** `get_profile`: the session's user with its profile. */
  getProfile(session: string, options?: CallOptions): Promise<ProfileResult> {
    return this.call("get_profile", { session }, options);
  }

  /** `set_profile`: `merge` (RFC 7396, the default) or `replace` the profile. */
  setProfile(session: string, profile: Record<string, unknown>, mode: "merge" | "replace" = "merge", options?: CallOptions): Promise<ProfileResult> {
    return this.call("set_profile", { session, profile, mode }, options);
  }

  /** `delete_user` (administrative). Errors: `not_found`, `forbidden`. */
  deleteUser(user: UserRef, options?: CallOptions): Promise<DeleteUserResult> {
    return this.call("delete_user", user, options);
  }

  /** `suspend` (administrative). Errors: `not_found`, `forbidden`. */
  suspend(user: UserRef, options?: CallOptions): Promise<UserStateResult> {
    return this.call("suspend", user, options);
  }

  /** `unsuspend` (administrative). Errors: `not_found`, `forbidden`. */
  unsuspend(user: UserRef, options?: CallOptions): Promise<UserStateResult> {
    return this.call("unsuspend", user, options);
  }

  /** `social_url`: the provider's authorization URL. Errors: `unknown_provider`. */
  socialUrl(provider: string, redirectUri?: string, options?: CallOptions): Promise<SocialUrlResult> {
    return this.call("social_url", redirectUri === undefined ? { provider } : { provider, redirect_uri: redirectUri }, options);
  }

  /** `social_login`: the provider's `code` and `state` to a session. */
  socialLogin(provider: string, code: string, state: string, options?: CallOptions): Promise<SocialLoginResult> {
    return this.call("social_login", { provider, code, state }, options);
  }

  /** `link_social`: links a provider account to the session's user. */
  linkSocial(session: string, provider: string, code: string, state: string, options?: CallOptions): Promise<LinkSocialResult> {
    return this.call("link_social", { session, provider, code, state }, options);
  }

  /** `deletion_done`: `service` deleted its data about `userId`. */
  deletionDone(userId: string, service: string, options?: CallOptions): Promise<DeletionStatus> {
    return this.call("deletion_done", { user_id: userId, service }, options);
  }

  /** `deletion_status`: which services acknowledged the deletion of `userId`. */
  deletionStatus(userId: string, options?: CallOptions): Promise<DeletionStatus> {
    return this.call("deletion_status", { user_id: userId }, options);
  }

  /**
   * `mfa_enroll`: a new TOTP secret for the session's user (and its `otpauth://` URI for a QR
   * code), inactive until `mfaConfirm`; calling it again before that replaces it. `secret` and
   * `uri` are secrets: show them to the user once. Errors: `session_invalid`,
   * `user_suspended`, `mfa_enabled`.
   */
  mfaEnroll(session: string, options?: CallOptions): Promise<MfaEnrollResult> {
    return this.call("mfa_enroll", { session }, options);
  }

  /**
   * `mfa_confirm`: the first code from the authenticator turns the second factor on; returns
   * the ten single-use recovery codes, shown this once. Errors: `session_invalid`,
   * `invalid_code`, `too_many_attempts`, `mfa_enabled`, `mfa_not_enabled`.
   */
  mfaConfirm(session: string, code: string, options?: CallOptions): Promise<MfaConfirmResult> {
    return this.call("mfa_confirm", { session, code }, options);
  }

  /**
   * `mfa_verify` with a TOTP code: the pending handle of an `mfa_required` login
   * (`ServerError.mfa.handle`) to the session the login would have opened. Errors:
   * `invalid_code`, `too_many_attempts`.
   */
  mfaVerify(handle: string, code: string, options?: CallOptions): Promise<LoginResult> {
    return this.call("mfa_verify", { handle, code }, options);
  }

  /** `mfa_verify` with a recovery code (used up by the call). Errors: as `mfaVerify`. */
  mfaRecover(handle: string, recoveryCode: string, options?: CallOptions): Promise<LoginResult> {
    return this.call("mfa_verify", { handle, recovery_code: recoveryCode }, options);
  }

  /**
   * `mfa_disable` with a fresh code: turns the second factor off. Errors: `session_invalid`,
   * `user_suspended`, `invalid_code`, `too_many_attempts`, `mfa_not_enabled`.
   */
  async mfaDisableWithCode(session: string, code: string, options?: CallOptions): Promise<void> {
    await this.call("mfa_disable", { session, code }, options);
  }

  /**
   * `mfa_disable` with the password: turns the second factor off. Errors: `session_invalid`,
   * `user_suspended`, `invalid_credentials`, `too_many_attempts`, `mfa_not_enabled`.
   */
  async mfaDisableWithPassword(session: string, password: string, options?: CallOptions): Promise<void> {
    await this.call("mfa_disable", { session, password }, options);
  }
}
