#!/usr/bin/env bash
# Installs what the Python and TypeScript clients' test suites need, inside the repository:
# a virtual environment at clients/python/.venv (pika, pytest, jsonschema from PyPI) and
# clients/typescript/node_modules from the committed package-lock.json, then compiles the
# TypeScript client. The Rust integration test `clients` runs both suites against a real pool.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")"

python=python3
venv=python/.venv
stamp="$venv/.installed-$(sha256sum python/pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
        echo "clients/setup.sh: python3-venv is missing; installing it" >&2
        sudo_if_needed=""
        [ "$(id -u)" -eq 0 ] || sudo_if_needed=sudo
        $sudo_if_needed apt-get update -qq >&2
        $sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e 'python[test]'
    touch "$stamp"
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "clients/setup.sh: Node.js 20 and npm are needed for the TypeScript client" >&2
    exit 1
fi
(
    cd typescript
    lock_stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
    if [ ! -e "$lock_stamp" ]; then
        npm ci --no-audit --no-fund --loglevel=error
        touch "$lock_stamp"
    fi
    npm run --silent build
)
