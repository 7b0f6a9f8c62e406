#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 and lets the `postgres` role in
# without a password from this host (what the test suite's per-test databases need):
# installs Debian's postgresql if it is missing, creates and starts its cluster if stopped,
# and waits until it accepts connections. Does nothing when a server already answers.
set -euo pipefail

say() { printf 'ensure-postgres: %s\n' "$*" >&2; }
answers() { psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc 'SELECT 1' >/dev/null 2>&1; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "installing postgresql from Debian's packages"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if answers; then
  exit 0
fi

version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
if [ -z "$version" ]; then
  say "no PostgreSQL cluster exists: creating one"
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  $sudo pg_createcluster "$version" main >/dev/null
fi
hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
  # Tests connect over loopback as `postgres` with no password: trust loopback only.
  say "trusting loopback connections in $hba"
  $sudo sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
fi
say "starting PostgreSQL $version"
$sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
  || $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 60); do
  if answers; then
    exit 0
  fi
  sleep 0.5
done
say "PostgreSQL does not answer on 127.0.0.1:5432"
exit 1
