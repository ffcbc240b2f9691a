#!/usr/bin/env bash
# Sets up a fresh Debian machine for the mesh: tools, npm dependencies, and the local
# Redis, MariaDB and RabbitMQ the services and tests talk to (started only if not running).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
# the console's browser tests drive Debian's chromium (playwright-core never downloads one)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null; fi
fi
# `docker-compose config` checks docker-compose.yml (envoy/test/compose.test.ts); it needs no
# Docker engine, so the engine it recommends is left out.
if ! command -v docker-compose >/dev/null; then
  echo "setup: installing docker-compose"
  sudo_=(); [ "$(id -u)" = 0 ] || sudo_=(sudo)
  "${sudo_[@]}" apt-get update -qq && "${sudo_[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "setup: $name did not come up" >&2; return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "setup: starting redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
  wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping
fi
if ! mysqladmin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  echo "setup: starting mariadb"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for mariadb mysqladmin -h 127.0.0.1 -u root ping
fi
if ! rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; then
  echo "setup: starting rabbitmq"
  rabbitmq-server -detached || true
  wait_for rabbitmq rabbitmq-diagnostics -q check_port_connectivity
fi
# The wins queues are quorum queues: an EMPTY classic gift.wins left by an earlier version is
# deleted and declared again as a quorum queue; one still holding wins is left alone and reported.
if [ -f wins/dist/migrate-main.js ]; then
  node wins/dist/migrate-main.js || echo "setup: wins queues not migrated (see above): drain them with the earlier gift-svc, then: npm run migrate-queues -w @redpacket/wins" >&2
fi
echo "setup: ready"
