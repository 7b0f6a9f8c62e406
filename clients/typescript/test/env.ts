/**
 * The suites run against a real authq worker pool: the Rust integration test `clients` starts
 * one in a fresh namespace and sets AUTHQ_TEST_AMQP_URL and AUTHQ_TEST_NAMESPACE. By hand:
 * start `authq serve --namespace NS --admin-caller guest --deny @denied.example`, then
 * `AUTHQ_TEST_NAMESPACE=NS npm test` here.
 */
import { fileURLToPath } from "node:url";
import path from "node:path";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
export const AMQP_URL = process.env.AUTHQ_TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";

export function namespace(): string {
  const ns = process.env.AUTHQ_TEST_NAMESPACE;
  if (!ns) throw new Error("AUTHQ_TEST_NAMESPACE is not set: these tests need a running authq pool (see test/env.ts)");
  return ns;
}
