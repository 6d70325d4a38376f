#!/bin/sh
# Install the named Debian packages that are not installed yet (as root, with apt-get);
# anyone else gets a clear message naming them. Used by ensure-system-deps.sh, `make deb` and
# tests/test_deb.py.
set -eu
missing=""
for package in "$@"; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = installed ] || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "fowld needs these system packages:$missing (run: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "installing system packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
