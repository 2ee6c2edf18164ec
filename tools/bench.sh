#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# tunnelgate benchmark: runs tgbench (B1..B6) against each setup, RUNS times, and prints
# the medians in one table with ratios; draws build/bench.png with gnuplot if present.
#
#   tools/bench.sh          full run (make bench)
#   tools/bench.sh smoke    every B-mode, tiny sizes, one relay=sockmap daemon (make bench-smoke)
#
# Setups (each gateway is a fresh process per run, started and stopped by PID):
#   direct    tgbench client -> origin, no relay: the physical reference
#   sockmap1  client -> tunnelgated relay=sockmap, direct pool -> origin       (1 hop)
#   splice1   client -> tunnelgated relay=splice,  direct pool -> origin       (1 hop)
#   sockmap2  client -> tunnelgated relay=sockmap -> UPSTREAM -> origin        (2 hops)
#   splice2   client -> tunnelgated relay=splice  -> UPSTREAM -> origin        (2 hops)
#   haproxy2  client -> haproxy 2.6 mode http     -> UPSTREAM -> origin        (2 hops)
# UPSTREAM is one more tunnelgated (relay=sockmap, direct pool): haproxy cannot dial a
# CONNECT target itself, so every gateway of the 2-hop rows forwards to the same one.
#
# Environment: RUNS (3), BYTES (1G), IDLE (3000), DURATION (5), SAMPLES (20000),
# SETUPS (all six, space separated), TESTS (all; e.g. "b4"), UPSTREAM_RELAY (sockmap), OUT (build), TGBENCH,
# DAEMON, HAPROXY.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-build}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
TGBENCH=${TGBENCH:-$OUT/tgbench}
DAEMON=${DAEMON:-$OUT/tunnelgated}
HAPROXY=${HAPROXY:-haproxy}
RUNS=${RUNS:-3}
BYTES=${BYTES:-1G}
# The hard RLIMIT_NOFILE here is 20000 and cannot be raised (no CAP_SYS_RESOURCE); a
# splice gateway holds 6 descriptors per tunnel (2 sockets + 2 pipes), so 3000 is what
# fits every setup. Figures are per tunnel.
IDLE=${IDLE:-3000}
DURATION=${DURATION:-5}
SAMPLES=${SAMPLES:-20000}
SETUPS=${SETUPS:-direct sockmap1 splice1 sockmap2 splice2 haproxy2}
TESTS=${TESTS:-all}	# tgbench tests per run, e.g. "b4" to rerun one figure
UPSTREAM_RELAY=${UPSTREAM_RELAY:-sockmap}	# relay of the shared upstream of the 2-hop rows
MODE=${1:-full}

die() { echo "bench: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: tunnelgated loads BPF programs"
[ -x "$TGBENCH" ] || die "$TGBENCH missing: build it with 'make -f Makefile -f tools/bench.mk build/tgbench'"
[ -x "$DAEMON" ] || die "$DAEMON missing: run 'make' first"

ulimit -n "$(ulimit -Hn)" # idle tunnels: every process started here inherits it
TMP=$(mktemp -d /tmp/tgbench.XXXXXX) || die "cannot create a temp dir"
PIDS=()		# every process we started and have not stopped yet
NINST=0		# daemon instances started: numbers pin dirs and sockets

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	rm -rf /sys/fs/bpf/tgbench-$$-* 2>/dev/null
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "bench: logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# wait_port PORT PID NAME: until PORT accepts, or PID died, or 10 s passed.
wait_port() {
	local i
	for i in $(seq 100); do
		kill -0 "$2" 2>/dev/null || { echo "bench: $3 exited at start:" >&2; tail -n 20 "$TMP/$3.log" >&2; return 1; }
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench: $3 did not listen on 127.0.0.1:$1 within 10 s" >&2
	return 1
}

# stop_pid PID NAME [SIGNAL]: SIGTERM (haproxy: SIGUSR1, its soft stop), up to 10 s, then
# SIGKILL. Fails when the exit was not clean.
stop_pid() {
	local i rc
	kill -"${3:-TERM}" "$1" 2>/dev/null
	for i in $(seq 100); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		echo "bench: $2 (pid $1) ignored SIGTERM for 10 s: killing it" >&2
		kill -KILL "$1" 2>/dev/null
	fi
	wait "$1" 2>/dev/null
	rc=$?
	forget_pid "$1"
	[ "$rc" = 0 ] || { echo "bench: $2 (pid $1) exited with status $rc; log tail:" >&2; tail -n 20 "$TMP/$2.log" >&2; return 1; }
}

# start_tg NAME RELAY [UPSTREAM_PORT]: a tunnelgated; sets PORT and PID.
start_tg() {
	local name=$1 relay=$2 up=${3:-} pool
	NINST=$((NINST + 1))
	PORT=$("$TGBENCH" --free-port) || return 1
	if [ -n "$up" ]; then pool="server = 127.0.0.1:$up"; else pool="direct = yes"; fi
	cat > "$TMP/$name.conf" <<-EOF
	[gateway]
	listen = 127.0.0.1:$PORT
	relay = $relay
	control = $TMP/$name.sock
	bpf_pin_dir = /sys/fs/bpf/tgbench-$$-$NINST
	connect_ports = *
	drain_timeout_ms = 2000
	access_log = $TMP/$name.access.log

	[pool up]
	$pool

	[route]
	default = up
	EOF
	"$DAEMON" -c "$TMP/$name.conf" 2>>"$TMP/$name.log" &
	PID=$!
	PIDS+=("$PID")
	wait_port "$PORT" "$PID" "$name"
}

# start_haproxy NAME UPSTREAM_PORT: sets PORT and PID.
start_haproxy() {
	local name=$1 up=$2
	PORT=$("$TGBENCH" --free-port) || return 1
	# Two sockets per tunnel plus splice pipes must fit the 20000 descriptors we have.
	cat > "$TMP/$name.cfg" <<-EOF
	global
	    maxconn 7000
	    tune.bufsize 262144

	defaults
	    mode http
	    no option http-buffer-request
	    option splice-auto
	    timeout connect 5s
	    timeout client 120s
	    timeout server 120s
	    timeout tunnel 1h

	frontend fe
	    bind 127.0.0.1:$PORT
	    default_backend be

	backend be
	    server up 127.0.0.1:$up
	EOF
	"$HAPROXY" -db -f "$TMP/$name.cfg" 2>>"$TMP/$name.log" &
	PID=$!
	PIDS+=("$PID")
	wait_port "$PORT" "$PID" "$name"
}

# run_setup SETUP OUTFILE TGBENCH-ARGS...: start its processes, run tgbench, stop them.
run_setup() {
	local setup=$1 outf=$2 up_pid="" up_name="" gw_pid="" gw_name="" target rc=0
	shift 2
	case $setup in
	direct) target=(--direct) ;;
	sockmap1 | splice1)
		start_tg "$setup" "${setup%1}" || return 1
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	sockmap2 | splice2 | haproxy2)
		start_tg "$setup-upstream" "$UPSTREAM_RELAY" || return 1
		up_pid=$PID up_name=$setup-upstream
		if [ "$setup" = haproxy2 ]; then start_haproxy "$setup" "$PORT"; else start_tg "$setup" "${setup%2}" "$PORT"; fi || { stop_pid "$up_pid" "$up_name"; return 1; }
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	*) echo "bench: unknown setup '$setup'" >&2; return 1 ;;
	esac
	if ! timeout 600 "$TGBENCH" "${target[@]}" "$@" > "$outf" 2>> "$TMP/$setup.tgbench.log"; then
		rc=1
		echo "bench: tgbench failed on $setup:" >&2
		tail -n 15 "$TMP/$setup.tgbench.log" >&2
		for n in $gw_name $up_name; do
			echo "--- $n log (last 20 lines):" >&2
			tail -n 20 "$TMP/$n.log" >&2
		done
	fi
	[ -z "$gw_pid" ] || stop_pid "$gw_pid" "$gw_name" "$([ "$setup" = haproxy2 ] && echo USR1 || echo TERM)" || rc=1
	[ -z "$up_pid" ] || stop_pid "$up_pid" "$up_name" || rc=1
	return $rc
}

if [ "$MODE" = smoke ]; then
	echo "bench-smoke: B1..B6 with --verify against one tunnelgated relay=sockmap (direct pool)"
	run_setup sockmap1 "$TMP/smoke.out" --verify --bytes 64M --tunnels 8 --samples 500 \
		--lat-tunnels 10 --clients 8 --duration 1 --idle 200 --timeout-ms 5000 all ||
		{ echo "bench-smoke: FAILED" >&2; exit 1; }
	cat "$TMP/smoke.out"
	for t in B1 B2 B3 B4 B5 B6; do
		grep -q "^$t " "$TMP/smoke.out" || { echo "bench-smoke: no $t figure: FAILED" >&2; exit 1; }
	done
	echo "bench-smoke: ok"
	exit 0
fi

RES=$TMP/res
if [ "$MODE" = report ]; then
	# tools/bench.sh report DIR: the table and chart again from a kept run's DIR/res.
	RES=${2:-}/res
	[ -d "$RES" ] || die "report: want the logs dir of a run (KEEP_TMP=1 keeps it)"
	RUNS=$(ls "$RES" | sed 's/.*\.//' | sort -u | wc -l)
elif [ "$MODE" != full ]; then
	die "unknown mode '$MODE' (full, smoke or report DIR)"
fi
mkdir -p "$RES" "$OUT" || die "cannot create $RES"
[ "$MODE" = report ] || echo "bench: $RUNS run(s) of: $SETUPS; BYTES=$BYTES IDLE=$IDLE DURATION=${DURATION}s SAMPLES=$SAMPLES"
start=$(date +%s)
[ "$MODE" = report ] || for run in $(seq "$RUNS"); do
	for s in $SETUPS; do
		t0=$(date +%s)
		run_setup "$s" "$RES/$s.$run" --bytes "$BYTES" --idle "$IDLE" --duration "$DURATION" \
			--samples "$SAMPLES" $TESTS || { KEEP_TMP=1; die "run $run of $s failed (see above)"; }
		printf '  run %d %-9s %3ds  %s\n' "$run" "$s" $(($(date +%s) - t0)) \
			"$(awk '$1=="B1"||$1=="B4"{printf "%s %s %s  ", $1, $2, $4}' "$RES/$s.$run")"
	done
done
[ "$MODE" = report ] || echo "bench: done in $(($(date +%s) - start)) s"

# Medians: one line per setup and figure: "setup key value".
for s in $SETUPS; do
	cat "$RES/$s".* 2>/dev/null | awk -v s="$s" '/^B[0-9] /{ print s, $1 "_" $2 "_" $3, $4 }'
done | sort -k1,1 -k2,2 -k3,3g | awk '
	{ k = $1 " " $2; v[k, ++n[k]] = $3; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
	END { for (i = 1; i <= m; i++) { k = order[i]; c = n[k];
		med = c % 2 ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2; print k, med } }
' > "$TMP/medians"

awk -v setups="$SETUPS" -v uprelay="$UPSTREAM_RELAY" -v dat="$OUT/bench.dat" -v runs="$RUNS" '
function val(s, k) { return ((s SUBSEP k) in med) ? med[s, k] : "" }
function ratio(a, b, k,   x, y) { x = val(a, k); y = val(b, k);
	return (x == "" || y == "" || y + 0 == 0) ? "-" : sprintf("%.2f", x / y) }
function fmt(x) { return x == "" ? "-" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.2f", x)) }
{ med[$1, $2] = $3 }
END {
	ns = split(setups, S, " ")
	nk = split("B1_up_gbps B1_down_gbps B2_down_gbps B3_lat1_p50_us B3_lat1_p99_us B3_lat1_p999_us " \
		"B3_lat100_p50_us B3_lat100_p99_us B3_lat100_p999_us B4_setup_tunnels_per_s " \
		"B5_down_cpu_s_per_gib B6_idle_daemon_bytes_per_tunnel B6_idle_kernel_bytes_per_tunnel", K, " ")
	printf "\nMedians of %d run(s). Topologies: direct = client->origin (no relay); sockmap1/splice1 =\n", runs
	printf "client->tunnelgated(direct pool)->origin; sockmap2/splice2/haproxy2 = client->GATEWAY->\n"
	printf "upstream tunnelgated(relay=%s, direct pool)->origin. Ratios: sm2/sp2 = sockmap2/splice2,\n", uprelay
	printf "sm2/hap2 = sockmap2/haproxy2, sm1/sp1 = sockmap1/splice1, smN/dir = sockmapN/direct.\n"
	printf "B5 is whole-machine CPU (endpoints included); B6 daemon = RSS of the gateway under test.\n\n"
	printf "%-33s", "figure"
	for (i = 1; i <= ns; i++) printf " %9s", S[i]
	printf " | %7s %8s %7s %7s %7s\n", "sm2/sp2", "sm2/hap2", "sm1/sp1", "sm1/dir", "sm2/dir"
	for (j = 1; j <= nk; j++) {
		k = K[j]; printf "%-33s", k
		for (i = 1; i <= ns; i++) printf " %9s", fmt(val(S[i], k))
		printf " | %7s %8s %7s %7s %7s\n", ratio("sockmap2", "splice2", k), ratio("sockmap2", "haproxy2", k),
			ratio("sockmap1", "splice1", k), ratio("sockmap1", "direct", k), ratio("sockmap2", "direct", k)
	}
	# Chart data: one row per setup, columns in the order of K.
	printf "# setup" > dat
	for (j = 1; j <= nk; j++) printf " %s", K[j] > dat
	printf "\n" > dat
	for (i = 1; i <= ns; i++) {
		printf "%s", S[i] > dat
		for (j = 1; j <= nk; j++) { x = val(S[i], K[j]); printf " %s", x == "" ? "0" : x > dat }
		printf "\n" > dat
	}

	# Targets of the issue "Benchmark: prove the kernel relay leads".
	printf "\nTargets (2-hop rows compare like with like; direct is compared with the 1-hop sockmap):\n"
	for (j = 1; j <= 3; j++) {
		k = K[j]
		check(k " sockmap2 >= 1.2x splice2", ratio("sockmap2", "splice2", k), ">=", 1.2)
		check(k " sockmap2 >= 1.2x haproxy2", ratio("sockmap2", "haproxy2", k), ">=", 1.2)
		check(k " sockmap1 >= 1.2x splice1", ratio("sockmap1", "splice1", k), ">=", 1.2)
		check(k " sockmap1 >= 0.7x direct", ratio("sockmap1", "direct", k), ">=", 0.7)
	}
	for (j = 1; j <= 2; j++) {
		k = j == 1 ? "B3_lat1_p99_us" : "B3_lat100_p99_us"
		check(k " sockmap2 <= splice2", ratio("sockmap2", "splice2", k), "<=", 1.0)
		check(k " sockmap1 <= splice1", ratio("sockmap1", "splice1", k), "<=", 1.0)
	}
	check("B4 sockmap2 >= 1.5x haproxy2", ratio("sockmap2", "haproxy2", "B4_setup_tunnels_per_s"), ">=", 1.5)
	check("B5 sockmap2 <= 0.6x splice2", ratio("sockmap2", "splice2", "B5_down_cpu_s_per_gib"), "<=", 0.6)
	check("B5 sockmap1 <= 0.6x splice1", ratio("sockmap1", "splice1", "B5_down_cpu_s_per_gib"), "<=", 0.6)
	for (i = 1; i <= 2; i++) {
		s = i == 1 ? "sockmap1" : "sockmap2"; x = val(s, "B6_idle_daemon_bytes_per_tunnel")
		check("B6 " s " daemon <= 2048 bytes/tunnel", x == "" ? "-" : sprintf("%.0f", x), "<=", 2048)
	}
}
function check(what, got, op, want,   ok) {
	if (got == "-") { printf "  n/a   %s (setup not run)\n", what; return }
	ok = op == ">=" ? got + 0 >= want : got + 0 <= want
	printf "  %-5s %s: %s\n", ok ? "MET" : "MISS", what, got
}
' "$TMP/medians"

if command -v gnuplot >/dev/null 2>&1; then
	if gnuplot -e "datafile='$OUT/bench.dat'; outfile='$OUT/bench.png'; runs=$RUNS" \
		"$ROOT/tools/bench.gnuplot" 2>"$TMP/gnuplot.log"; then
		echo "chart: $OUT/bench.png"
	else
		echo "chart: gnuplot failed:" >&2; cat "$TMP/gnuplot.log" >&2
	fi
else
	echo "chart: skipped, gnuplot is not installed (apt-get install gnuplot-nox); data in $OUT/bench.dat"
fi
