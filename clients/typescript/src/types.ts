/**
 * Typed replies: the `data` of each operation's `ok` reply, as described by the JSON Schemas
 * in `protocol/schema/replies/` (PROTOCOL.md section 5). Replies may carry fields these types
 * do not list: ignore them. Timestamps are Unix milliseconds.
 */

/** A user's lifecycle state. */
export type UserState = "pending" | "active" | "suspended";

/** A user as replies show it. */
export interface User {
  id: string;
  email: string;
  state: UserState;
  /** A JSON object owned by the calling services. */
  profile: Record<string, unknown>;
}

/** `register`: the pending user and the confirmation code to mail. */
export interface RegisterResult {
  user_id: string;
  code: string;
  expires_at: number;
}

/** `confirm_registration`: the now active user. */
export interface ConfirmRegistrationResult {
  user: User;
}

/** `login`: a fresh session. */
export interface LoginResult {
  session: string;
  expires_at: number;
  user: User;
}

/** `check`: the session's user and its (possibly renewed) expiry. */
export interface CheckResult {
  user: User;
  expires_at: number;
  renewed: boolean;
  /** Absent from older workers: treat as 0. */
  session_epoch?: number;
}

/** `logout` (and `ping`): an empty object. */
export type Empty = Record<string, never>;

/** `logout_all`: how many sessions ended. */
export interface LogoutAllResult {
  ended: number;
}

/** `start_reset`: the reset token to mail. */
export interface StartResetResult {
  token: string;
  expires_at: number;
}

/** `complete_reset`: the user; every session ended. */
export interface CompleteResetResult {
  user: User;
  sessions_ended: number;
}

/** `change_password`: how many other sessions ended. */
export interface ChangePasswordResult {
  sessions_ended: number;
}

/** `get_profile` and `set_profile`. */
export interface ProfileResult {
  user: User;
}

/** `delete_user`. */
export interface DeleteUserResult {
  user_id: string;
}

/** `suspend` and `unsuspend`: the user in its new state. */
export interface UserStateResult {
  user: User;
  sessions_ended: number;
}

/** `social_url`: where to send the browser. */
export interface SocialUrlResult {
  url: string;
  state: string;
  expires_at: number;
}

/** `social_login`: a fresh session. */
export interface SocialLoginResult {
  session: string;
  expires_at: number;
  user: User;
  created: boolean;
}

/** `link_social`. */
export interface LinkSocialResult {
  user: User;
  provider: string;
  subject: string;
}

/** `deletion_done` and `deletion_status`. */
export interface DeletionStatus {
  user_id: string;
  requested_at: number;
  deadline: number;
  acknowledged: string[];
  pending: string[];
  completed_at?: number;
}

/** Names a user in administrative operations: exactly one of the two. */
export type UserRef = { user_id: string; email?: never } | { email: string; user_id?: never };

/** A reply envelope, as `callRaw` returns it. */
export type Envelope =
  | { status: "ok"; data: Record<string, unknown> }
  | { status: "error"; error: { code: string; message: string } };
