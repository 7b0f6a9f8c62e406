/** src/replies.ts is generated from protocol/schema/replies/ and must not drift from it. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

test("the typed replies match the reply schemas", () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const run = spawnSync(process.execPath, [path.join(root, "tools/generate-types.mjs"), "--check"], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
});
