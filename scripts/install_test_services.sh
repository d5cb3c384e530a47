#!/usr/bin/env bash
# System packages the integration tests use: wrk (HTTP load generator), a PostgreSQL server, Redis and
# Chromium (the dashboard's Playwright browser tests launch /usr/bin/chromium; `playwright install` needs network)
# and nginx (`fulqrun-ml serve --replicas N` puts it in front of the Triton replicas; run as the serving user).
# Idempotent; tests also install what is missing themselves, this just does it once up front.
set -euo pipefail
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_services: missing ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "install_test_services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
