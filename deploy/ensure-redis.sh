#!/usr/bin/env bash
# Makes sure a Redis server answers on 127.0.0.1:6379 (for `--redis-url` and the test suite):
# installs Debian's redis-server if missing, starts it if stopped, waits until it answers PING.
set -euo pipefail

answers() {
    # A PING over bash's /dev/tcp: no client needed.
    local reply
    reply=$({ exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3; } 2>/dev/null) || return 1
    [[ "$reply" == +PONG* ]]
}

if answers; then
    exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: installing redis-server from Debian's packages" >&2
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi
echo "ensure-redis: starting redis-server" >&2
if command -v systemctl >/dev/null 2>&1 && systemctl start redis-server 2>/dev/null; then
    :
else
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
fi
for _ in $(seq 1 60); do
    if answers; then
        exit 0
    fi
    sleep 0.5
done
echo "ensure-redis: Redis does not answer on 127.0.0.1:6379" >&2
exit 1
