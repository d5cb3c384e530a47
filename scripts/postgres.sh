#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for tests and CI (never for real data: trust auth, loopback).
#
#   scripts/postgres.sh start [--port N] [--data-dir DIR]   # prints the DSN on stdout
#   scripts/postgres.sh stop  [--data-dir DIR] [--purge]    # stops it (--purge deletes DIR)
#   scripts/postgres.sh status [--data-dir DIR]             # prints the DSN if running, exits 1 if not
#
# Installs the Debian `postgresql` package if no server binaries are found (apt-get, needs root).
# Idempotent: `start` on a running cluster prints its DSN again; on a stopped one restarts it on its
# previous port unless --port says otherwise. Works as root (the server runs as the `postgres` user, as
# PostgreSQL refuses to run as root) and as an ordinary user. Defaults: DIR=${TMPDIR:-/tmp}/fulqrun-pg,
# a free port chosen by the kernel. Everything but the DSN goes to stderr.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() { echo "postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

command_name=${1:-}
[[ -n $command_name ]] || usage
shift
port=""
data_dir="${TMPDIR:-/tmp}/fulqrun-pg"
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

find_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z $dir ]] && command -v pg_ctl >/dev/null 2>&1; then dir=$(dirname "$(command -v pg_ctl)"); fi
  echo "$dir"
}

install_postgres() {
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
  say "installing PostgreSQL (apt-get install -y postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

# Run a PostgreSQL binary as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  local p
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  for p in $(seq 54320 54420); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found in 54320-54420"
}

dsn() { echo "postgresql://postgres@127.0.0.1:$1/postgres"; }

running() { [[ -f $data_dir/PG_VERSION ]] && as_owner "$bin_dir/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; }

bin_dir=$(find_bin_dir)
case $command_name in
  start)
    if [[ -z $bin_dir ]]; then install_postgres; bin_dir=$(find_bin_dir); fi
    [[ -x $bin_dir/initdb && -x $bin_dir/pg_ctl ]] || die "no initdb/pg_ctl found (looked in /usr/lib/postgresql/*/bin)"
    if running; then
      current=$(cat "$port_file" 2>/dev/null || true)
      [[ -n $current ]] || die "a server runs in $data_dir but $port_file is missing; stop it first"
      [[ -z $port || $port == "$current" ]] || die "already running in $data_dir on port $current, not $port"
      say "already running in $data_dir"
      dsn "$current"
      exit 0
    fi
    if [[ ! -f $data_dir/PG_VERSION ]]; then
      if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (it comes with the postgresql package)"
        install -d -m 0700 -o postgres -g postgres "$data_dir"
        as_owner test -w "$data_dir" || die "user postgres cannot write $data_dir (are its parents traversable?)"
      else
        mkdir -p -m 0700 "$data_dir"
      fi
      say "initialising a cluster in $data_dir"
      as_owner "$bin_dir/initdb" -D "$data_dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$data_dir.initdb.log" 2>&1 || { cat "$data_dir.initdb.log" >&2; die "initdb failed"; }
    fi
    port=${port:-$(cat "$port_file" 2>/dev/null || true)}
    port=${port:-$(free_port)}
    say "starting on 127.0.0.1:$port (log: $data_dir/server.log)"
    as_owner "$bin_dir/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $data_dir -c fsync=off -c full_page_writes=off" start >&2 \
      || { tail -n 20 "$data_dir/server.log" >&2 || true; die "pg_ctl start failed"; }
    echo "$port" | as_owner tee "$port_file" >/dev/null
    as_owner "$bin_dir/pg_isready" -h 127.0.0.1 -p "$port" -t 30 >&2 || die "server did not accept connections"
    dsn "$port"
    ;;
  stop)
    [[ -n $bin_dir ]] || die "PostgreSQL is not installed: nothing to stop"
    if running; then
      as_owner "$bin_dir/pg_ctl" -D "$data_dir" -m fast -w stop >&2
    else
      say "not running in $data_dir"
    fi
    if [[ $purge -eq 1 ]]; then
      rm -rf -- "$data_dir" "$data_dir.initdb.log"
      say "removed $data_dir"
    fi
    ;;
  status)
    if [[ -n $bin_dir ]] && running; then dsn "$(cat "$port_file")"; else say "not running in $data_dir"; exit 1; fi
    ;;
  *) usage ;;
esac
