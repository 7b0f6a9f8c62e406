/** TypeScript client for authq: authentication over RabbitMQ (PROTOCOL.md is the contract). */
export { AuthqClient, PROTOCOL_VERSION } from "./client.js";
export type { CallOptions, ClientOptions, RawCallOptions } from "./client.js";
export {
  AuthqError,
  ConnectError,
  ConnectionLostError,
  NoDeploymentError,
  OverloadedError,
  ServerError,
  TimeoutError,
  UnroutableError,
} from "./errors.js";
export type * from "./types.js";
export { TokenRefused, verifyAccessToken } from "./verify.js";
export type { AccessClaims } from "./verify.js";
