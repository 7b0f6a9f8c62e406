/**
 * A gateway's local check of an authq access token (PROTOCOL.md, "Access tokens"): the EdDSA
 * signature against the published keys (the `jwks` reply or the worker's JWKS file), then
 * `alg`, `iss`, `aud` and `exp` against the given time. No call to authq, no dependency beyond
 * node:crypto.
 */
import { createPublicKey, verify } from "node:crypto";
import type { Jwk } from "./replies.js";

/** The claims of an access token. */
export interface AccessClaims {
  sub: string;
  sid?: string;
  client_type: string;
  scope?: string;
  iat: number;
  exp: number;
  iss: string;
  aud: string;
  jti: string;
  session_epoch?: number;
}

/** Why a token was refused. */
export class TokenRefused extends Error {
  constructor(readonly reason: "malformed" | "algorithm" | "unknown_key" | "invalid" | "expired") {
    super(`access token refused: ${reason}`);
    this.name = "TokenRefused";
  }
}

function part(segment: string): unknown {
  try {
    return JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch {
    throw new TokenRefused("malformed");
  }
}

/**
 * The claims of `token` if it is valid at `now` (Unix seconds) for `issuer` and `audience`
 * under one of `keys`; throws {@link TokenRefused} otherwise. Only EdDSA (Ed25519) is accepted:
 * never `none`, never an HMAC algorithm. A gateway that gets `unknown_key` should read the key
 * set again once (a new key may have started signing).
 */
export function verifyAccessToken(
  token: string,
  keys: readonly Jwk[],
  expected: { issuer: string; audience: string; now?: number },
): AccessClaims {
  const segments = token.split(".");
  if (segments.length !== 3) throw new TokenRefused("malformed");
  const [h, p, s] = segments as [string, string, string];
  const header = part(h) as { alg?: unknown; kid?: unknown };
  if (header.alg !== "EdDSA") throw new TokenRefused("algorithm");
  const jwk = keys.find((k) => k.kid === header.kid && k.kty === "OKP" && k.crv === "Ed25519" && k.alg === "EdDSA");
  if (!jwk) throw new TokenRefused("unknown_key");
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" });
  const signed = Buffer.from(`${h}.${p}`, "utf8");
  if (!verify(null, signed, key, Buffer.from(s, "base64url"))) throw new TokenRefused("invalid");
  const claims = part(p) as AccessClaims;
  if (claims.iss !== expected.issuer || claims.aud !== expected.audience) throw new TokenRefused("invalid");
  if (typeof claims.exp !== "number" || typeof claims.sub !== "string") throw new TokenRefused("invalid");
  const now = expected.now ?? Math.floor(Date.now() / 1000);
  if (claims.exp <= now) throw new TokenRefused("expired");
  return claims;
}
