#!/usr/bin/env node
// Generates src/replies.ts, the typed replies, from the JSON Schemas in protocol/schema/replies/.
//   node tools/generate-types.mjs          rewrites src/replies.ts
//   node tools/generate-types.mjs --check  exits 1 if src/replies.ts differs (a test runs this)
// Handles the subset of JSON Schema that schemars emits for authq's reply types.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const schemaDir = path.resolve(here, "../../../protocol/schema/replies");
const out = path.resolve(here, "../src/replies.ts");

// Operation → the interface its reply becomes (operations sharing a reply share a name).
const NAMES = {
  register: "RegisterResult",
  confirm_registration: "ConfirmRegistrationResult",
  login: "LoginResult",
  check: "CheckResult",
  logout_all: "LogoutAllResult",
  list_sessions: "ListSessionsResult",
  start_reset: "StartResetResult",
  complete_reset: "CompleteResetResult",
  change_password: "ChangePasswordResult",
  get_profile: "ProfileResult",
  set_profile: "ProfileResult",
  delete_user: "DeleteUserResult",
  suspend: "UserStateResult",
  unsuspend: "UserStateResult",
  social_url: "SocialUrlResult",
  social_login: "SocialLoginResult",
  link_social: "LinkSocialResult",
  deletion_done: "DeletionStatus",
  deletion_status: "DeletionStatus",
  ping: "Empty",
  logout: "Empty",
  end_session: "Empty",
  list_users: "ListUsersResult",
  get_user: "GetUserResult",
  import_users: "ImportUsersResult",
  end_user_sessions: "EndUserSessionsResult",
  mfa_enroll: "MfaEnrollResult",
  mfa_confirm: "MfaConfirmResult",
  mfa_verify: "LoginResult",
  mfa_disable: "Empty",
  reset_mfa: "ResetMfaResult",
  jwks: "JwksResult",
  refresh: "RefreshResult",
  create_service_client: "ServiceClientResult",
  rotate_service_client_secret: "ServiceClientResult",
  revoke_service_client: "Empty",
  service_token: "ServiceTokenResult",
  list_service_clients: "ServiceClientListResult",
};
// $defs → exported names.
const DEFS = {
  UserInfo: "User",
  UserState: "UserState",
  Profile: "Profile",
  SessionSummary: "SessionSummary",
  UserSummary: "UserSummary",
  ImportResult: "ImportResult",
  ImportStatus: "ImportStatus",
  Jwk: "Jwk",
  ServiceClientSummary: "ServiceClientSummary",
};

function doc(description, indent) {
  if (!description) return "";
  const lines = description.split("\n").map((l) => `${indent} * ${l}`.trimEnd());
  return `${indent}/**\n${lines.join("\n")}\n${indent} */\n`;
}

function typeOf(schema) {
  if (schema.$ref) return DEFS[schema.$ref.replace("#/$defs/", "")];
  if (schema.oneOf) return schema.oneOf.map((s) => JSON.stringify(s.const)).join(" | ");
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  return types
    .map((t) => {
      switch (t) {
        case "string":
          return "string";
        case "integer":
        case "number":
          return "number";
        case "boolean":
          return "boolean";
        case "null":
          return "null";
        case "array":
          return `${typeOf(schema.items)}[]`;
        case "object":
          return schema.properties ? objectType(schema, "") : "Record<string, unknown>";
        default:
          throw new Error(`unsupported schema type ${t}`);
      }
    })
    .join(" | ");
}

function objectType(schema, indent) {
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties ?? {}).map(
    ([name, prop]) => `${doc(prop.description, indent + "  ")}${indent}  ${name}${required.has(name) ? "" : "?"}: ${typeOf(prop)};`,
  );
  return fields.length ? `{\n${fields.join("\n")}\n${indent}}` : "Record<string, never>";
}

function declaration(name, schema) {
  const body = schema.type === "object" && schema.properties ? objectType(schema, "") : typeOf(schema);
  const kind = body.startsWith("{") ? `export interface ${name} ${body}` : `export type ${name} = ${body};`;
  return `${doc(schema.description, "")}${kind}\n`;
}

export function generate() {
  const decls = new Map();
  const files = readdirSync(schemaDir).filter((f) => f.endsWith(".json")).sort();
  for (const file of files) {
    const op = file.replace(/\.json$/, "");
    const name = NAMES[op];
    if (!name) throw new Error(`no interface name for the reply of ${op}: add it to NAMES`);
    const schema = JSON.parse(readFileSync(path.join(schemaDir, file), "utf8"));
    for (const [def, defSchema] of Object.entries(schema.$defs ?? {})) {
      const text = declaration(DEFS[def], defSchema);
      if (decls.has(DEFS[def]) && decls.get(DEFS[def]) !== text) throw new Error(`${def} differs between schemas`);
      decls.set(DEFS[def], text);
    }
    const text = declaration(name, schema);
    if (decls.has(name) && decls.get(name) !== text) throw new Error(`the replies named ${name} differ`);
    decls.set(name, text);
  }
  const header =
    "// Generated by tools/generate-types.mjs from protocol/schema/replies/: do not edit.\n" +
    "// Replies may carry fields these types do not list: ignore them. Timestamps are Unix ms.\n\n";
  return header + [...decls.values()].join("\n");
}

const text = generate();
if (process.argv.includes("--check")) {
  const current = readFileSync(out, "utf8");
  if (current !== text) {
    console.error("src/replies.ts differs from protocol/schema/replies/: run `node tools/generate-types.mjs`");
    process.exit(1);
  }
} else {
  writeFileSync(out, text);
}
