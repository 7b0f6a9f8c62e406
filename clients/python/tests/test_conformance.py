"""protocol/conformance/cases.json, through AuthqClient.call_raw; every reply must validate
against protocol/schema/."""

import json
import os
import pathlib
import re
import uuid

import jsonschema
import pytest

from authq_client import AuthqClient, AuthqTimeoutError

from conftest import REPO

CASES = json.loads(pathlib.Path(os.environ.get("AUTHQ_CONFORMANCE", REPO / "protocol/conformance/cases.json")).read_text())
SCHEMAS = pathlib.Path(os.environ.get("AUTHQ_SCHEMA_DIR", REPO / "protocol/schema"))
_VAR = re.compile(r"\$\{([a-z_0-9]+)\}")


def substitute(value, variables):
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole and whole.group(1) in variables:
            return variables[whole.group(1)]

        def text(m):
            v = variables[m.group(1)]
            return v if isinstance(v, str) else json.dumps(v)

        return _VAR.sub(text, value)
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def contains(actual, expected):
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def check_schema(operation, reply):
    if reply.get("status") == "ok":
        path, instance = SCHEMAS / "replies" / f"{operation}.json", reply["data"]
    else:
        path, instance = SCHEMAS / "error.json", reply
    jsonschema.Draft202012Validator(json.loads(path.read_text())).validate(instance)


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["name"] for c in CASES["cases"]])
def test_conformance(client: AuthqClient, case):
    variables = {"run": uuid.uuid4().hex[:12]}
    by_id = {}
    for index, step in enumerate(case["steps"]):
        at = f"{case['name']} step {index}"
        op, expect = step["call"], step["expect"]
        for _ in range(step.get("repeat", 1)):
            if "raw_body" in step:
                body = step["raw_body"].encode()
            else:
                payload = substitute(step["body"], variables)
                if "pad_to_bytes" in step:
                    payload["pad"] = "x" * step["pad_to_bytes"]
                body = json.dumps(payload).encode()
            message_id = substitute(step["message_id"], variables) if "message_id" in step else None
            deadline_ms = None
            if step.get("deadline") == "past":
                import time

                deadline_ms = int(time.time() * 1000) - 60_000
            timeout = expect.get("wait_ms", 20_000) / 1000
            try:
                reply = client.call_raw(op, body, timeout=timeout, message_id=message_id, deadline_ms=deadline_ms, send_user_id=not step.get("anonymous", False))
            except AuthqTimeoutError:
                assert expect.get("outcome") == "no_reply", f"{at}: no reply"
                continue
            assert expect.get("outcome") != "no_reply", f"{at}: expected no reply, got {reply}"
            check_schema(op, reply)
            assert reply["status"] == expect["status"], f"{at}: {reply}"
            if "code" in expect:
                assert reply["error"]["code"] == expect["code"], f"{at}: {reply}"
            if "data" in expect:
                wanted = substitute(expect["data"], variables)
                assert contains(reply["data"], wanted), f"{at}: {reply} does not contain {wanted}"
            if "same_data_as" in expect:
                assert by_id[expect["same_data_as"]]["data"] == reply["data"], at
            if "id" in step:
                by_id[step["id"]] = reply
            for name, path in step.get("save", {}).items():
                value = reply["data"]
                for part in path.split("."):
                    value = value[part]
                variables[name] = value
