/** protocol/conformance/cases.json through AuthqClient.callRaw; every reply must validate
 * against protocol/schema/. */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import Ajv2020Module from "ajv/dist/2020.js";
import { AuthqClient, TimeoutError } from "../src/index.js";
import type { Envelope } from "../src/index.js";
import { AMQP_URL, REPO, namespace } from "./env.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
const Ajv2020 = (Ajv2020Module as Json).default ?? Ajv2020Module;
const ajv = new Ajv2020({ strict: false, validateFormats: false });
const suite: Json = JSON.parse(readFileSync(process.env.AUTHQ_CONFORMANCE ?? path.join(REPO, "protocol/conformance/cases.json"), "utf8"));
const schemaDir = process.env.AUTHQ_SCHEMA_DIR ?? path.join(REPO, "protocol/schema");
const validators = new Map<string, Json>();

function validator(file: string): Json {
  let v = validators.get(file);
  if (!v) {
    v = ajv.compile(JSON.parse(readFileSync(path.join(schemaDir, file), "utf8")));
    validators.set(file, v);
  }
  return v;
}

function checkSchema(operation: string, reply: Envelope): void {
  const [file, instance] = reply.status === "ok" ? [`replies/${operation}.json`, reply.data] : ["error.json", reply];
  const v = validator(file);
  assert.ok(v(instance), `the reply to ${operation} breaks ${file}: ${ajv.errorsText(v.errors)} in ${JSON.stringify(reply)}`);
}

const VAR = /\$\{([a-z_0-9]+)\}/g;
function substitute(value: Json, vars: Record<string, Json>): Json {
  if (typeof value === "string") {
    const whole = /^\$\{([a-z_0-9]+)\}$/.exec(value);
    if (whole && whole[1] in vars) return vars[whole[1]];
    return value.replace(VAR, (_, name: string) => {
      assert.ok(name in vars, `undefined variable ${name}`);
      const v = vars[name];
      return typeof v === "string" ? v : JSON.stringify(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, vars));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, vars)]));
  return value;
}

function contains(actual: Json, expected: Json): boolean {
  if (expected && typeof expected === "object" && !Array.isArray(expected)) {
    return actual && typeof actual === "object" && Object.entries(expected).every(([k, v]) => k in actual && contains(actual[k], v));
  }
  return JSON.stringify(actual) === JSON.stringify(expected);
}

describe("conformance", () => {
  const client = new AuthqClient(AMQP_URL, { namespace: namespace(), timeoutMs: 20_000 });
  after(() => client.close());

  for (const kase of suite.cases as Json[]) {
    test(kase.name, async () => {
      const vars: Record<string, Json> = { run: randomUUID().replace(/-/g, "").slice(0, 12) };
      const byId: Record<string, Envelope> = {};
      for (const [index, step] of (kase.steps as Json[]).entries()) {
        const at = `${kase.name} step ${index}`;
        const expect = step.expect;
        for (let i = 0; i < (step.repeat ?? 1); i++) {
          let body: Buffer;
          if (step.raw_body !== undefined) body = Buffer.from(step.raw_body, "utf8");
          else {
            const payload = substitute(step.body, vars);
            if (step.pad_to_bytes) payload.pad = "x".repeat(step.pad_to_bytes);
            body = Buffer.from(JSON.stringify(payload));
          }
          let reply: Envelope;
          try {
            reply = await client.callRaw(step.call, body, {
              timeoutMs: expect.wait_ms ?? 20_000,
              messageId: step.message_id === undefined ? undefined : substitute(step.message_id, vars),
              deadlineMs: step.deadline === "past" ? Date.now() - 60_000 : undefined,
              sendUserId: !step.anonymous,
            });
          } catch (e) {
            assert.ok(e instanceof TimeoutError && expect.outcome === "no_reply", `${at}: ${e}`);
            continue;
          }
          assert.notEqual(expect.outcome, "no_reply", `${at}: expected no reply, got ${JSON.stringify(reply)}`);
          checkSchema(step.call, reply);
          assert.equal(reply.status, expect.status, `${at}: ${JSON.stringify(reply)}`);
          if (expect.code !== undefined) assert.equal(reply.status === "error" && reply.error.code, expect.code, `${at}: ${JSON.stringify(reply)}`);
          const data: Json = reply.status === "ok" ? reply.data : undefined;
          if (expect.data !== undefined) {
            const wanted = substitute(expect.data, vars);
            assert.ok(contains(data, wanted), `${at}: ${JSON.stringify(reply)} does not contain ${JSON.stringify(wanted)}`);
          }
          if (expect.same_data_as !== undefined) assert.deepEqual(data, (byId[expect.same_data_as] as Json).data, at);
          if (step.id !== undefined) byId[step.id] = reply;
          for (const [name, p] of Object.entries(step.save ?? {})) {
            let value: Json = data;
            for (const part of String(p).split(".")) value = value?.[part];
            assert.notEqual(value, undefined, `${at}: no ${p} in ${JSON.stringify(reply)}`);
            vars[name] = value;
          }
        }
      }
    });
  }
});
