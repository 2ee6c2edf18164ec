#!/bin/sh
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# make install-check: `make install` into a temporary DESTDIR, then check the tree:
# every file there and nothing else, binaries as built, the man pages render without
# warnings and describe every option, command, signal and config key, the unit's
# placeholders are substituted, the example config says `user = tunnelgate`, passes
# `tunnelgated -t` and survives a second install; last, `systemd-analyze verify` on a
# copy of the unit whose Exec lines point at the build output. Run from the top
# directory by the Makefile (OUT, MAKE, PREFIX, SYSCONFDIR from there).
set -eu

OUT=${OUT:-build}
MAKE=${MAKE:-make}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
top=$(pwd)
d=$(mktemp -d /tmp/tunnelgate-install.XXXXXX)
trap 'rm -rf "$d"' EXIT
fails=0

fail() { echo "  FAIL     $*"; fails=$((fails + 1)); }
ok() { echo "  ok       $*"; }

echo "== make install DESTDIR=$d"
$MAKE --no-print-directory install DESTDIR="$d"

sbin=$d$PREFIX/sbin/tunnelgated
bin=$d$PREFIX/bin/tunnelctl
man8=$d$PREFIX/share/man/man8
man5=$d$PREFIX/share/man/man5
unit=$d$PREFIX/lib/systemd/system/tunnelgated.service
conf=$d$SYSCONFDIR/tunnelgate/tunnelgate.conf

echo "== installed files"
(cd "$d" && find . -type f -printf '%m %p\n' | sed 's|^\([0-9]*\) \./|\1 /|' | sort -k2)
expected=$(printf '%s\n' "$sbin" "$bin" "$man8/tunnelgated.8" "$man8/tunnelctl.8" \
	"$man5/tunnelgate.conf.5" "$unit" "$conf" | sort)
found=$(find "$d" -type f | sort)
[ "$found" = "$expected" ] && ok "exactly the 7 expected files" ||
	fail "installed files differ from the expected list: $(printf '%s\n' "$found" "$expected" | sort | uniq -u | tr '\n' ' ')"

echo "== binaries"
for pair in "$sbin:$OUT/tunnelgated" "$bin:$OUT/tunnelctl"; do
	f=${pair%%:*} b=${pair#*:}
	[ -x "$f" ] && cmp -s "$f" "$b" && ok "$f is $b, executable" || fail "$f missing, not executable or not $b"
done
v=$("$sbin" --version 2>&1) && echo "$v" | grep -Eq '^tunnelgated [^ ]+$' && ok "tunnelgated --version: $v" ||
	fail "tunnelgated --version printed '$v'"
v=$("$bin" --version 2>&1) && echo "$v" | grep -Eq '^tunnelctl [^ ]+$' && ok "tunnelctl --version: $v" ||
	fail "tunnelctl --version printed '$v'"

echo "== man pages"
# render PAGE TEXTFILE: man -l with groff's warnings on; any warning is a failure.
render() {
	if ! LC_ALL=C MANWIDTH=80 man --warnings -l "$1" 2>"$d/man.err" | col -bx >"$2"; then
		fail "man -l $1 failed: $(cat "$d/man.err")"
	elif [ -s "$d/man.err" ]; then
		fail "man -l $1 warns: $(cat "$d/man.err")"
	elif ! grep -q '^NAME' "$2" || [ "$(wc -l <"$2")" -lt 20 ]; then
		fail "man -l $1 rendered no NAME section or under 20 lines"
	else
		ok "$1 renders: $(wc -l <"$2") lines, $(sed -n 4p "$2" | sed 's/^ *//')"
	fi
	# sentences, whatever the line breaks and hyphenation
	sed -e ':a' -e '/[a-z]-$/{N;s/-\n *//;ba' -e '}' "$2" | tr -s ' \n' '  ' >"$2.flat"
}
for p in "$man8/tunnelgated.8" "$man8/tunnelctl.8" "$man5/tunnelgate.conf.5"; do
	[ -s "$p" ] && grep -q '^\.TH ' "$p" || fail "$p is empty or not troff (.TH)"
	render "$p" "$d/$(basename "$p").txt"
done
# need TEXTFILE WHAT PATTERN...: each extended regex must match a line of the page.
need() {
	file=$1 what=$2
	shift 2
	missing=""
	for pat in "$@"; do
		grep -Eq -- "$pat" "$file" || missing="$missing '$pat'"
	done
	[ -z "$missing" ] && ok "$(basename "$file" .txt) describes every $what ($#)" ||
		fail "$(basename "$file" .txt) lacks $what:$missing"
}
need "$d/tunnelgated.8.txt" "option and signal" '^ +-c, --config FILE' '^ +-v, --verbose' \
	'^ +-t, --test' '^ +-h, --help' '^ +-V, --version' '^ +SIGHUP *$' '^ +SIGTERM, SIGINT *$' \
	'^ +SIGUSR1 *$'
need "$d/tunnelgated.8.txt.flat" "output of -t and --version" 'configuration FILE is valid and exits 0' \
	'prints the error .* and exits 1' 'Print tunnelgated VERSION'
need "$d/tunnelctl.8.txt" "option and command" '^ +-s, --socket SOCKET' '^ +list \[--json\] *$' \
	'^ +list \[--json\] --from-maps \[DIR\] *$' \
	'^ +stats *$' '^ +pools *$' '^ +kill ID *$' '^ +-h, --help' '^ +-V, --version'
need "$d/tunnelctl.8.txt.flat" "output of --version" 'Print tunnelctl VERSION'
# The authoritative key list: the four key tables of user/config_keys.c.
keys=$(awk '/^static const struct key_def (gateway|pool|rule|route)_keys\[\]/ { on = 1; next }
	on && /^};/ { on = 0 }
	on { if (match($0, /\.name = "[a-z_]+"/)) print substr($0, RSTART + 9, RLENGTH - 10);
	     else if (match($0, /(STRING|NUMBER)\([a-z_]+/)) { s = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", s); print s } }' \
	user/config_keys.c)
[ "$(echo "$keys" | wc -l)" -ge 35 ] || fail "found only $(echo "$keys" | wc -l) keys in user/config_keys.c"
set --
for k in $keys; do set -- "$@" "^ +$k = "; done
need "$d/tunnelgate.conf.5.txt" "key of user/config_keys.c" "$@"

echo "== unit"
grep -q '@' "$unit" && fail "$unit still has a placeholder: $(grep '@' "$unit")" || ok "no @PLACEHOLDER@ left"
grep -qx "ExecStart=$PREFIX/sbin/tunnelgated -c $SYSCONFDIR/tunnelgate/tunnelgate.conf" "$unit" &&
	grep -qx "ExecStartPre=$PREFIX/sbin/tunnelgated -t -c $SYSCONFDIR/tunnelgate/tunnelgate.conf" "$unit" &&
	ok "ExecStartPre/ExecStart run $PREFIX/sbin/tunnelgated on $SYSCONFDIR/tunnelgate/tunnelgate.conf" ||
	fail "ExecStart/ExecStartPre lines are not the installed paths"

echo "== config"
[ "$(grep -c '^user *= *tunnelgate\b' "$conf")" = 1 ] && ! grep -q '^user *= *nobody' "$conf" &&
	ok "$conf sets user = tunnelgate" || fail "$conf does not set user = tunnelgate once"
out=$("$OUT/tunnelgated" -t -c "$conf" 2>&1) && [ "$out" = "configuration $conf is valid" ] &&
	ok "tunnelgated -t: $out" || fail "tunnelgated -t -c $conf: $out"
echo "; a local edit" >>"$conf"
$MAKE --no-print-directory install DESTDIR="$d" >"$d/reinstall.log" 2>&1 || fail "second make install failed: $(cat "$d/reinstall.log")"
tail -n 1 "$conf" | grep -qx '; a local edit' && grep -q KEEP "$d/reinstall.log" &&
	ok "a second install keeps the existing $conf" || fail "a second install replaced $conf"

echo "== systemd-analyze verify (Exec lines pointing at $top/$OUT)"
mkdir "$d/verify"
sed -e "s|$PREFIX/sbin/tunnelgated|$top/$OUT/tunnelgated|g" \
    -e "s|$SYSCONFDIR/tunnelgate/tunnelgate.conf|$conf|g" "$unit" >"$d/verify/tunnelgated.service"
grep '^Exec' "$d/verify/tunnelgated.service" | sed 's/^/  /'
# MANPATH: Documentation=man:... is looked up in the pages just installed.
if MANPATH=$d$PREFIX/share/man systemd-analyze verify "$d/verify/tunnelgated.service" >"$d/verify.out" 2>&1; then
	rc=0
else
	rc=$?
fi
sed 's/^/  | /' "$d/verify.out"
echo "  systemd-analyze verify: exit $rc, $(wc -l <"$d/verify.out") lines of output"
if [ "$rc" != 0 ]; then
	fail "systemd-analyze verify exited $rc"
elif grep -q 'tunnelgated' "$d/verify.out"; then
	fail "systemd-analyze verify warns about the unit"
else
	ok "systemd-analyze verify: no complaint about tunnelgated.service"
fi

if [ "$fails" != 0 ]; then
	echo "install-check: $fails FAILED"
	exit 1
fi
echo "install-check: all passed"
