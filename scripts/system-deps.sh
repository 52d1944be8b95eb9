#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium (browser tests), PostgreSQL 15 (the serving
# store's PostgreSQL tests), nginx and iproute2 (the multi-host deployment tests: a load
# balancer in front of API hosts in network namespaces). Installed only when missing; needs
# root (CI and these machines run as root) or passwordless sudo.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
