#!/usr/bin/env bash
# A throwaway Redis server on 127.0.0.1 for the online feature store's tests, CI and `make run` (no auth,
# loopback only, no persistence: never for real data).
#
#   scripts/redis.sh start [--port N] [--data-dir DIR]   # prints the URL (redis://127.0.0.1:N/0) on stdout
#   scripts/redis.sh stop  [--data-dir DIR] [--purge]    # stops it (--purge deletes DIR)
#   scripts/redis.sh status [--data-dir DIR]             # prints the URL if running, exits 1 if not
#
# Installs the Debian `redis-server` package if no server binary is found (apt-get, needs root). Idempotent:
# `start` on a running server prints its URL again. Defaults: DIR=${TMPDIR:-/tmp}/fulqrun-redis, a free port
# chosen by the kernel. Everything but the URL goes to stderr.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() { echo "redis.sh: $*" >&2; }
die() { say "$*"; exit 1; }

command_name=${1:-}
[[ -n $command_name ]] || usage
shift
port=""
data_dir="${TMPDIR:-/tmp}/fulqrun-redis"
purge=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --data-dir) data_dir=${2:?--data-dir needs a value}; shift 2 ;;
    --purge) purge=1; shift ;;
    -h|--help) usage ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ -z $port || $port =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
data_dir=$(realpath -m "$data_dir")
port_file="$data_dir/fulqrun.port"
pid_file="$data_dir/redis.pid"

install_redis() {
  [[ $(id -u) -eq 0 ]] || die "redis-server is not installed and installing it needs root (apt-get install redis-server)"
  say "installing Redis (apt-get install -y redis-server)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq redis-server >&2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

url() { echo "redis://127.0.0.1:$1/0"; }

running() { [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case $command_name in
  start)
    command -v redis-server >/dev/null 2>&1 || install_redis
    mkdir -p "$data_dir"
    if running; then
      current=$(cat "$port_file")
      [[ -z $port || $port == "$current" ]] || die "already running in $data_dir on port $current, not $port"
      say "already running in $data_dir"
      url "$current"
      exit 0
    fi
    port=${port:-$(free_port)}
    say "starting on 127.0.0.1:$port (log: $data_dir/redis.log)"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$data_dir" --daemonize yes --pidfile "$pid_file" \
      --logfile "$data_dir/redis.log" --save "" --appendonly no --protected-mode yes >&2
    echo "$port" >"$port_file"
    for _ in $(seq 1 100); do
      if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then url "$port"; exit 0; fi
      sleep 0.1
    done
    tail -n 20 "$data_dir/redis.log" >&2 || true
    die "server did not answer PING"
    ;;
  stop)
    if running; then
      redis-cli -h 127.0.0.1 -p "$(cat "$port_file")" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$pid_file")"
      for _ in $(seq 1 50); do running || break; sleep 0.1; done
    else
      say "not running in $data_dir"
    fi
    if [[ $purge -eq 1 ]]; then rm -rf -- "$data_dir"; say "removed $data_dir"; fi
    ;;
  status)
    if running; then url "$(cat "$port_file")"; else say "not running in $data_dir"; exit 1; fi
    ;;
  *) usage ;;
esac
