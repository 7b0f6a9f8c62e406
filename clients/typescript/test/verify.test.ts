/** verifyAccessToken refuses what authq::verify refuses (tests/it/tokens.rs), offline. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign } from "node:crypto";
import { TokenRefused, verifyAccessToken } from "../src/verify.js";
import type { Jwk } from "../src/replies.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const x = (publicKey.export({ format: "jwk" }) as { x: string }).x;
const keys: Jwk[] = [{ kty: "OKP", crv: "Ed25519", x, kid: "k1", alg: "EdDSA", use: "sig" }];
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const now = 1_800_000_000;
const claims = {
  sub: "u1", sid: "s1", client_type: "user", iat: now, exp: now + 300,
  iss: "authq", aud: "authq", jti: "j1", session_epoch: 0,
};
function token(header: object, payload: object): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
}
const expected = { issuer: "authq", audience: "authq", now };
const refused = (t: string, reason: string, e = expected) =>
  assert.throws(() => verifyAccessToken(t, keys, e), (err: unknown) => err instanceof TokenRefused && err.reason === reason);

test("a valid token verifies and its claims come back", () => {
  const t = token({ alg: "EdDSA", typ: "JWT", kid: "k1" }, claims);
  assert.deepEqual(verifyAccessToken(t, keys, expected), claims);
});

test("forged, altered, misaddressed, expired and unknown-key tokens are refused", () => {
  const good = token({ alg: "EdDSA", kid: "k1" }, claims);
  const [h, p, s] = good.split(".");
  refused(`${b64({ alg: "none", kid: "k1" })}.${p}.`, "algorithm");
  const hsInput = `${b64({ alg: "HS256", kid: "k1" })}.${p}`;
  refused(`${hsInput}.${createHmac("sha256", Buffer.from(x, "base64url")).update(hsInput).digest("base64url")}`, "algorithm");
  refused(`${h}.${b64({ ...claims, sub: "someone-else" })}.${s}`, "invalid");
  refused(token({ alg: "EdDSA", kid: "k1" }, { ...claims, aud: "other" }), "invalid");
  refused(token({ alg: "EdDSA", kid: "k1" }, { ...claims, iss: "other" }), "invalid");
  refused(good, "expired", { ...expected, now: now + 300 });
  refused(token({ alg: "EdDSA", kid: "k2" }, claims), "unknown_key");
  refused("not-a-jwt", "malformed");
});
