/**
 * Every failure is an `AuthqError` with a `code`: for an error reply from a worker, the
 * protocol's error code (PROTOCOL.md section 6); for conditions seen on the broker, one of
 * `overloaded`, `unroutable`, `no_deployment`, `timeout`, `connection_lost`, `connect` and
 * `access_refused`, each with its own class. Messages never contain passwords or tokens.
 */
export class AuthqError extends Error {
  /** The error code: branch on it. */
  readonly code: string;
  /** Whether the same call (with the same `messageId`) may succeed later. */
  readonly retryable: boolean;

  constructor(code: string, message: string, retryable = false) {
    super(`${code}: ${message}`);
    this.name = new.target.name;
    this.code = code;
    this.retryable = retryable;
  }
}

/** The worker answered with an error reply; `code` is the protocol's error code. */
export class ServerError extends AuthqError {
  /** The worker's explanation, for humans. */
  readonly detail: string;
  /** With `mfa_required`: the pending handle to pass to `mfa_verify` with a code. */
  readonly mfa?: { handle: string; expires_at: number };

  constructor(code: string, message: string, mfa?: { handle: string; expires_at: number }) {
    super(code, message, ["too_many_attempts", "provider_unavailable", "unavailable", "internal"].includes(code));
    this.detail = message;
    this.mfa = mfa;
  }
}

/** A full tube refused the request (broker nack): nothing was done. Back off and retry. */
export class OverloadedError extends AuthqError {
  constructor(operation: string) {
    super("overloaded", `authq is overloaded: the broker refused ${JSON.stringify(operation)} (its tube is full)`, true);
  }
}

/** No queue takes the request (the deployment's queues are gone). Nothing was done. */
export class UnroutableError extends AuthqError {
  constructor(operation: string) {
    super("unroutable", `the broker could not route the ${JSON.stringify(operation)} request to any queue`);
  }
}

/** No authq deployment uses this namespace on this broker. */
export class NoDeploymentError extends AuthqError {
  constructor(namespace: string) {
    super("no_deployment", `no authq deployment with namespace ${JSON.stringify(namespace)} on this broker`);
  }
}

/**
 * No reply within the call's timeout. The request may still be processed: retry a mutating
 * call only with the same `messageId`. A stopped worker pool looks like this.
 */
export class TimeoutError extends AuthqError {
  constructor(timeoutMs: number) {
    super("timeout", `no reply within ${timeoutMs} ms`, true);
  }
}

/** The connection dropped while the call was in flight; the next call reconnects. */
export class ConnectionLostError extends AuthqError {
  constructor(detail = "") {
    super("connection_lost", `the connection to the broker was lost${detail ? `: ${detail}` : ""}`, true);
  }
}

/**
 * The broker could not be reached (`code === "connect"`) or refused the credentials or the
 * virtual host (`code === "access_refused"`).
 */
export class ConnectError extends AuthqError {
  constructor(code: "connect" | "access_refused", url: string, detail: string) {
    super(code, `${url}: ${detail}`, code === "connect");
  }
}
