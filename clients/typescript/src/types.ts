/**
 * Typed replies: the `data` of each operation's `ok` reply, generated from the JSON Schemas in
 * `protocol/schema/replies/` into `replies.ts` (`node tools/generate-types.mjs`), and the
 * request-side types the client's methods take.
 */

export type {
  ChangePasswordResult,
  CheckResult,
  CompleteResetResult,
  ConfirmRegistrationResult,
  DeleteUserResult,
  DeletionStatus,
  Empty,
  LinkSocialResult,
  ListSessionsResult,
  LoginResult,
  LogoutAllResult,
  MfaConfirmResult,
  MfaEnrollResult,
  Profile,
  ProfileResult,
  RegisterResult,
  SessionSummary,
  SocialLoginResult,
  SocialUrlResult,
  StartResetResult,
  User,
  UserState,
  UserStateResult,
} from "./replies.js";

/** The end user's device as the calling service saw it, passed to `login`. */
export interface LoginDevice {
  /** The end user's IP address (also limits failed logins per address). */
  clientIp?: string;
  /** The end user's user agent, at most 512 bytes. */
  userAgent?: string;
}

/** Names a user in administrative operations: exactly one of the two. */
export type UserRef = { user_id: string; email?: never } | { email: string; user_id?: never };

/** A reply envelope, as `callRaw` returns it. */
export type Envelope =
  | { status: "ok"; data: Record<string, unknown> }
  | { status: "error"; error: { code: string; message: string; mfa?: MfaPending } };

/** What an `mfa_required` error carries: the pending handle for `mfa_verify`. */
export interface MfaPending {
  handle: string;
  expires_at: number;
}
