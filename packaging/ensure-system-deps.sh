#!/bin/sh
# Install the system programs fowld's tests and demo use, when they are missing
# (man renders the man pages in tests/test_manpages.py). With the argument "bench", also
# sshd and ssh for the forwarding benchmark's OpenSSH row.
# Only root can install; anyone else gets a clear message naming the packages.
set -eu
missing=""
if [ "${1:-}" = bench ]; then
    command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"
    [ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
fi
command -v dbus-daemon >/dev/null 2>&1 || missing="$missing dbus"
command -v busctl >/dev/null 2>&1 || missing="$missing systemd"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v gdbus >/dev/null 2>&1 || missing="$missing libglib2.0-bin"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v ss >/dev/null 2>&1 || missing="$missing iproute2"
command -v man >/dev/null 2>&1 || missing="$missing man-db"
# The user bus under systemd, for the tests that boot systemd in private namespaces.
[ -e /usr/lib/systemd/user/dbus.socket ] || missing="$missing dbus-user-session"
[ -z "$missing" ] && exit 0
packages=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
# shellcheck disable=SC2086
sh "$(dirname "$0")/apt-install-missing.sh" $packages
case "$packages" in *openssh-server*)
    # the benchmark runs a private sshd of its own; Debian also enables the system's
    echo "note: openssh-server enables the system ssh.service; the benchmark does not use it" \
        "(systemctl disable --now ssh.service turns it off)" ;;
esac
