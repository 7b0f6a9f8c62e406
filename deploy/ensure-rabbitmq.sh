#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (or $AUTHQ_BROKER_HOST:$AUTHQ_BROKER_PORT):
# installs rabbitmq-server from Debian's packages if it is missing, starts it if it is stopped,
# and waits until it accepts connections. Does nothing when a broker already answers.
set -euo pipefail

host="${AUTHQ_BROKER_HOST:-127.0.0.1}"
port="${AUTHQ_BROKER_PORT:-5672}"

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
say() { printf 'ensure-rabbitmq: %s\n' "$*" >&2; }

if answers; then
  exit 0
fi
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  say "no broker answers on $host:$port, and it is not local: start it there."
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
  say "installing rabbitmq-server from Debian's packages"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"

if ! answers; then
  if [ -d /run/systemd/system ] && $sudo systemctl start rabbitmq-server 2>/dev/null; then
    say "started rabbitmq-server with systemd"
  else
    say "starting rabbitmq-server -detached"
    $sudo rabbitmq-server -detached
  fi
fi

for _ in $(seq 1 120); do
  if answers; then
    # The port opens a moment before the broker is ready for clients.
    $sudo rabbitmqctl await_startup >/dev/null 2>&1 || sleep 1
    say "RabbitMQ answers on $host:$port"
    exit 0
  fi
  sleep 0.5
done
say "RabbitMQ did not come up on $host:$port within 60 s; see /var/log/rabbitmq/"
exit 1
