#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# First-try check: what a new user's first command does on a machine without the build
# packages. Purges the build libraries (PURGE below), clones this repository
# afresh, runs `make run` there and pushes one CONNECT through the daemon it starts
# (curl -> 127.0.0.1:3128 -> openssl s_server on 127.0.0.1:443).
#
#   tools/first-try.sh      as root; it removes packages, then make run installs them
#
# Needs port 3128 and 443 free on 127.0.0.1 and nothing else listening there. Exits 0
# when the CONNECT came back with the origin's page.
set -u

die() { echo "first-try: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: it purges and installs Debian packages"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/tg-first-try.XXXXXX) || die "cannot create a temp dir"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

PURGE="node-llhttp libinih-dev libbpf-dev libc-ares-dev libcap-dev libseccomp-dev scdoc"
echo "first-try: purging $PURGE"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $PURGE \
	>"$TMP/purge.log" 2>&1 || die "apt-get purge failed: see $TMP/purge.log"
git clone -q "$ROOT" "$TMP/clone" || die "cannot clone $ROOT"

openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -days 1 \
	-keyout "$TMP/k.pem" -out "$TMP/c.pem" >/dev/null 2>&1 || die "openssl req failed"
openssl s_server -www -accept 127.0.0.1:443 -cert "$TMP/c.pem" -key "$TMP/k.pem" \
	>/dev/null 2>&1 &
PIDS+=($!)

(cd "$TMP/clone" && exec make run) >"$TMP/run.log" 2>&1 &
PIDS+=($!)
echo "first-try: make run in $TMP/clone (log: $TMP/run.log)"
for _ in $(seq 1 600); do	# packages and the build: 10 minutes at most
	grep -q "listening on" "$TMP/run.log" && break
	kill -0 "${PIDS[1]}" 2>/dev/null || { cat "$TMP/run.log"; die "make run stopped"; }
	sleep 1
done
grep -q "listening on" "$TMP/run.log" || { tail "$TMP/run.log"; die "no listener after 600 s"; }

page=$(curl -sk --max-time 10 -x http://127.0.0.1:3128 https://127.0.0.1/)
case $page in
*"<HTML>"*) echo "first-try: ok: make run worked on the first try and relayed a CONNECT" ;;
*) tail "$TMP/run.log"; die "the CONNECT through the daemon failed" ;;
esac
# make run's daemon is a child of make: stop the whole group.
pkill -TERM -f "$TMP/clone/build/tunnelgated" 2>/dev/null
exit 0
