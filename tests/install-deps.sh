#!/bin/bash
# install-deps.sh — install the Debian packages tierd needs (tests/debian-packages.txt).
#
# Does nothing when they are all installed already. Needs root and apt-get;
# elsewhere it says what is missing and leaves the installing to you.
# --update: always run `apt-get update` first (CI does).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mapfile -t packages < <(grep -v '^#' "$here/debian-packages.txt" | grep -v '^$')

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${1:-}" != "--update" ] && [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root on Debian 12 (sudo $0) or install them yourself" >&2
    exit 1
  fi
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"

# The package starts a system redis-server on 6379; the tests and the demo run
# their own on free ports, so that one is only in the way.
if [ ${#missing[@]} -gt 0 ] && printf '%s\n' "${missing[@]}" | grep -qx redis-server; then
  systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true
fi
