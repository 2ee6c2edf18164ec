#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# tunnelgate benchmark: runs tgbench (B1..B6) against each setup, RUNS times, and prints
# the medians in one table with ratios; draws build/bench.png with gnuplot if present.
#
#   tools/bench.sh          full run (make bench)
#   tools/bench.sh smoke    every B-mode, tiny sizes, one relay=sockmap daemon (make bench-smoke)
#   tools/bench.sh reuse    B7 alone: plain HTTP req/s with upstream keep-alive on and off
#   tools/bench.sh guard    B8 alone: receiver CPU per SYN dropped by the XDP guard, by
#                           nftables, and per SYN the listener answers (see B8 below)
#
# Setups (each gateway is a fresh process per run, started and stopped by PID):
#   direct    tgbench client -> origin, no relay: the physical reference
#   sockmap1  client -> tunnelgated relay=sockmap, direct pool -> origin       (1 hop)
#   splice1   client -> tunnelgated relay=splice,  direct pool -> origin       (1 hop)
#   hold1     as sockmap1 with pause = hold: lagging directions held and copied by the
#             daemon instead of paused (the fallback when the sockops program cannot load)
#   sockmap2  client -> tunnelgated relay=sockmap -> UPSTREAM -> origin        (2 hops)
#   splice2   client -> tunnelgated relay=splice  -> UPSTREAM -> origin        (2 hops)
#   haproxy2  client -> haproxy 2.6 mode http     -> UPSTREAM -> origin        (2 hops)
#   squid1    client -> squid 5.7 (CONNECT, no cache)       -> origin        (1 hop)
#   sockmap1w1 as sockmap1 with workers = 1 (sockmap1 runs the default: one per CPU)
#   squid1w2  as squid1 with `workers 2` (squid's SMP mode: two worker processes)
#   tinyproxy1 client -> tinyproxy 1.11                     -> origin        (1 hop)
# UPSTREAM is one more tunnelgated (relay=sockmap, direct pool): haproxy cannot dial a
# CONNECT target itself, so every gateway of the 2-hop rows forwards to the same one.
# squid1 and tinyproxy1 are the one-hop proxies a user would pick instead of tunnelgate;
# they dial the origin themselves and allow CONNECT to its port only. A setup whose
# program is not installed is skipped with a message (its column shows "-"). B6 runs on
# both: squid holds 2 descriptors per tunnel (of the 20000 it inherits), tinyproxy one
# thread per client (MaxClients is IDLE + 1000).
#
# tgbench runs once per test (b6 b1 b2 b3 b4 for "all") against the same gateway
# process and the same origin port. Around b1 and b2 the stats of a relay=sockmap
# tunnelgated under test (sockmap1, and the front gateway of sockmap2) are read with
# tunnelctl: the bytes_kernel/bytes_copied counters give the "copied %" rows (the
# share of the tunnel bytes copied through the daemon); "-" when the daemon does not
# print them.
#
# Environment: RUNS (3), BYTES (1G), IDLE (3000), DURATION (5), SAMPLES (20000),
# SETUPS (all eight, space separated), TESTS (all; e.g. "b4"), UPSTREAM_RELAY (sockmap), OUT (build), TGBENCH,
# DAEMON, TUNNELCTL, HAPROXY, SQUID, TINYPROXY; for B7 WRK, NGINX, B7_CONNS (32); for B8
# SYNFLOOD, GUARD_RATE (200000).
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-build}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
TGBENCH=${TGBENCH:-$OUT/tgbench}
DAEMON=${DAEMON:-$OUT/tunnelgated}
TUNNELCTL=${TUNNELCTL:-$OUT/tunnelctl}
HAPROXY=${HAPROXY:-haproxy}
SQUID=${SQUID:-squid}
TINYPROXY=${TINYPROXY:-tinyproxy}
RUNS=${RUNS:-3}
BYTES=${BYTES:-1G}
# The hard RLIMIT_NOFILE here is 20000 and cannot be raised (no CAP_SYS_RESOURCE); a
# splice gateway holds 6 descriptors per tunnel (2 sockets + 2 pipes), so 3000 is what
# fits every setup. Figures are per tunnel.
IDLE=${IDLE:-3000}
DURATION=${DURATION:-5}
SAMPLES=${SAMPLES:-20000}
SETUPS=${SETUPS:-direct sockmap1 sockmap1w1 hold1 splice1 sockmap2 splice2 haproxy2 squid1 squid1w2 tinyproxy1}
TESTS=${TESTS:-all}	# tgbench tests per run, e.g. "b4" to rerun one figure
UPSTREAM_RELAY=${UPSTREAM_RELAY:-sockmap}	# relay of the shared upstream of the 2-hop rows
MODE=${1:-full}

die() { echo "bench: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: tunnelgated loads BPF programs"
[ -x "$TGBENCH" ] || die "$TGBENCH missing: build it with 'make build/tgbench' in $ROOT"
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
	[ -z "${GB_NS:-}${GB_IF:-}" ] || gb_teardown
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

# launch NAME CMD...: start CMD in the background, its output appended to NAME.log, and
# wait for it to listen on PORT; sets PID.
launch() {
	local name=$1
	shift
	"$@" >>"$TMP/$name.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$PORT" "$PID" "$name"
}

# start_tg NAME RELAY [UPSTREAM_PORT] [PAUSE] [WORKERS]: a tunnelgated (WORKERS: its
# workers key, the default when empty); sets PORT and PID.
start_tg() {
	local name=$1 relay=$2 up=${3:-} pause=${4:-sockops} workers=${5:+workers = $5} pool
	NINST=$((NINST + 1))
	PORT=$("$TGBENCH" --free-port) || return 1
	if [ -n "$up" ]; then pool="server = 127.0.0.1:$up"; else pool="direct = yes"; fi
	cat > "$TMP/$name.conf" <<-EOF
	[gateway]
	listen = 127.0.0.1:$PORT
	relay = $relay
	pause = $pause
	$workers
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
	launch "$name" "$DAEMON" -c "$TMP/$name.conf"
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
	launch "$name" "$HAPROXY" -db -f "$TMP/$name.cfg"
}

# start_squid NAME ORIGIN_PORT [WORKERS]: squid in the foreground (-N), WORKERS (1) worker
# processes (SMP mode above 1: a coordinator forks them, all on the one port), no cache and no
# access log, CONNECT from localhost to ORIGIN_PORT only, IP literals only (any name
# look-up would go to 127.0.0.1). Squid drops root for its cache_effective_user, so its
# directory (pid file, core dumps) and cache.log ($TMP/NAME.log, its stderr too) belong
# to that user and $TMP is made traversable. Sets PORT and PID.
start_squid() {
	local name=$1 oport=$2 workers=${3:-1} dir=$TMP/$1.d user=proxy
	id -u "$user" >/dev/null 2>&1 || user=nobody
	PORT=$("$TGBENCH" --free-port) || return 1
	chmod 711 "$TMP" && install -d -o "$user" -m 700 "$dir" &&
		touch "$TMP/$name.log" && chown "$user" "$TMP/$name.log" || return 1
	cat > "$TMP/$name.conf" <<-EOF
	http_port 127.0.0.1:$PORT
	workers $workers
	cache_effective_user $user
	acl CONNECT method CONNECT
	acl origin_port port $oport
	http_access allow localhost CONNECT origin_port
	http_access deny all
	cache deny all
	cache_mem 0 MB
	access_log none
	cache_store_log none
	cache_log $TMP/$name.log
	pid_filename $dir/squid.pid
	coredump_dir $dir
	netdb_filename none
	pinger_enable off
	visible_hostname localhost
	dns_nameservers 127.0.0.1
	shutdown_lifetime 0 seconds
	EOF
	launch "$name" "$SQUID" -N -f "$TMP/$name.conf"
}

# start_tinyproxy NAME ORIGIN_PORT: tinyproxy in the foreground (-d), CONNECT to
# ORIGIN_PORT only; one thread per client, so MaxClients leaves room for the B6 idle
# tunnels. Sets PORT and PID.
start_tinyproxy() {
	local name=$1 oport=$2
	PORT=$("$TGBENCH" --free-port) || return 1
	cat > "$TMP/$name.conf" <<-EOF
	Port $PORT
	Listen 127.0.0.1
	Timeout 600
	MaxClients $((IDLE + 1000))
	Allow 127.0.0.1
	ConnectPort $oport
	DisableViaHeader Yes
	LogLevel Warning
	PidFile "$TMP/$name.pid"
	EOF
	launch "$name" "$TINYPROXY" -d -c "$TMP/$name.conf"
}

# have_program SETUP: 0 when the program the setup runs is installed.
have_program() {
	local prog
	case $1 in
	squid1 | squid1w2) prog=$SQUID ;;
	tinyproxy1) prog=$TINYPROXY ;;
	haproxy2) prog=$HAPROXY ;;
	*) return 0 ;;
	esac
	command -v "$prog" >/dev/null 2>&1
}

# gw_bytes SOCKET: "KERNEL COPIED" from tunnelctl stats, once no tunnel is open (up to
# 5 s), so the counters of the tunnels just closed are final; nothing when the daemon
# does not print both counters.
gw_bytes() {
	local i st open
	for i in $(seq 50); do
		st=$("$TUNNELCTL" -s "$1" stats 2>/dev/null) || return 0
		open=$(printf '%s\n' "$st" | awk -F'\t' '$1=="tunnels_open"{print $2}')
		[ -z "$open" ] || [ "$open" = 0 ] && break
		sleep 0.1
	done
	printf '%s\n' "$st" | awk -F'\t' '$1=="bytes_kernel"{k=$2; hk=1} $1=="bytes_copied"{c=$2; hc=1}
		END { if (hk && hc) print k, c }'
}

# run_setup SETUP OUTFILE "TEST..." TGBENCH-ARGS...: start its processes, run tgbench once
# per test (same gateway, same origin port), stop them. Around b1 and b2 on a
# relay=sockmap tunnelgated, "B<n> copied pct X" goes to OUTFILE too.
run_setup() {
	local setup=$1 outf=$2 tests=$3 up_pid="" up_name="" gw_pid="" gw_name="" gw_sock="" target rc=0
	local oport t b0 b1
	shift 3
	oport=$("$TGBENCH" --free-port) || return 1
	case $setup in
	direct) target=(--direct) ;;
	sockmap1 | splice1)
		start_tg "$setup" "${setup%1}" || return 1
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	hold1)
		start_tg "$setup" sockmap "" hold || return 1
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	sockmap1w1)
		start_tg "$setup" sockmap "" sockops 1 || return 1
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	squid1w2)
		start_squid "$setup" "$oport" 2 || return 1
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	squid1 | tinyproxy1)
		"start_${setup%1}" "$setup" "$oport" || return 1
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	sockmap2 | splice2 | haproxy2)
		start_tg "$setup-upstream" "$UPSTREAM_RELAY" || return 1
		up_pid=$PID up_name=$setup-upstream
		if [ "$setup" = haproxy2 ]; then start_haproxy "$setup" "$PORT"; else start_tg "$setup" "${setup%2}" "$PORT"; fi || { stop_pid "$up_pid" "$up_name"; return 1; }
		gw_pid=$PID gw_name=$setup target=(--proxy "127.0.0.1:$PORT" --pid "$PID") ;;
	*) echo "bench: unknown setup '$setup'" >&2; return 1 ;;
	esac
	case $setup in sockmap1 | sockmap1w1 | hold1 | sockmap2) gw_sock=$TMP/$setup.sock ;; esac
	[ "$tests" = all ] && tests="b6 b1 b2 b3 b4"	# tgbench's own order for "all"
	: > "$outf"
	for t in $tests; do
		b0=""
		case $t in b1 | b2) [ -z "$gw_sock" ] || b0=$(gw_bytes "$gw_sock") ;; esac
		if ! timeout 600 "$TGBENCH" "${target[@]}" --origin-port "$oport" "$@" "$t" >> "$outf" 2>> "$TMP/$setup.tgbench.log"; then
			rc=1
			echo "bench: tgbench $t failed on $setup:" >&2
			tail -n 15 "$TMP/$setup.tgbench.log" >&2
			for n in $gw_name $up_name; do
				echo "--- $n log (last 20 lines):" >&2
				tail -n 20 "$TMP/$n.log" >&2
			done
			break
		fi
		[ -n "$b0" ] || continue
		b1=$(gw_bytes "$gw_sock")
		[ -n "$b1" ] && echo "$b0 $b1" | awk -v t="${t^^}" '{ k = $3 - $1; c = $4 - $2
			if (k + c > 0) printf "%s copied pct %.3f\n", t, 100 * c / (k + c) }' >> "$outf"
	done
	[ -z "$gw_pid" ] || stop_pid "$gw_pid" "$gw_name" "$([ "$setup" = haproxy2 ] && echo USR1 || echo TERM)" || rc=1
	[ -z "$up_pid" ] || stop_pid "$up_pid" "$up_name" || rc=1
	return $rc
}

# ---- B7: plain HTTP requests/s through tunnelgated, upstream keep-alive on and off ----
# wrk (keep-alive clients; origin-form GET / with the origin's Host, so the direct pool
# dials it) -> tunnelgated relay=splice, direct pool -> nginx (one worker, `return 200`,
# keep-alive). "on": upstream_idle_max = 64 (the default), the upstream connections are
# reused; "off": upstream_idle_max = 0, one upstream connection per request. Each is a
# fresh gateway per run, RUNS runs alternating; the medians are printed. Needs wrk and
# nginx (BENCH_PKGS: wrk, nginx-light); skipped with a message without them.
WRK=${WRK:-wrk}
NGINX=${NGINX:-nginx}
B7_CONNS=${B7_CONNS:-32}	# wrk's client connections

# start_nginx NAME: nginx in the foreground with everything in $TMP/NAME.d; sets PORT, PID.
start_nginx() {
	local name=$1 d=$TMP/$1.d
	PORT=$("$TGBENCH" --free-port) || return 1
	mkdir -p "$d" || return 1
	cat > "$d/nginx.conf" <<-EOF
	daemon off;
	worker_processes 1;
	pid $d/nginx.pid;
	error_log $TMP/$name.log warn;
	events { worker_connections 4096; }
	http {
	    access_log off;
	    client_body_temp_path $d/body;
	    proxy_temp_path $d/proxy;
	    fastcgi_temp_path $d/fastcgi;
	    uwsgi_temp_path $d/uwsgi;
	    scgi_temp_path $d/scgi;
	    keepalive_requests 1000000;
	    keepalive_timeout 75s;
	    server {
	        listen 127.0.0.1:$PORT;
	        location / { return 200 "tunnelgate bench\n"; }
	    }
	}
	EOF
	launch "$name" "$NGINX" -p "$d" -c "$d/nginx.conf"
}

# b7_once NAME IDLE_MAX ORIGIN_PORT: one wrk run through a fresh gateway; prints
# "REQ_PER_S REUSED REQUESTS".
b7_once() {
	local name=$1 out rps reused
	NINST=$((NINST + 1))
	PORT=$("$TGBENCH" --free-port) || return 1
	cat > "$TMP/$name.conf" <<-EOF
	[gateway]
	listen = 127.0.0.1:$PORT
	relay = splice
	control = $TMP/$name.sock
	bpf_pin_dir = /sys/fs/bpf/tgbench-$$-$NINST
	http_ports = *
	drain_timeout_ms = 2000
	access_log = $TMP/$name.access.log
	upstream_idle_max = $2

	[pool up]
	direct = yes
	EOF
	launch "$name" "$DAEMON" -c "$TMP/$name.conf" || return 1
	local gw=$PID gwport=$PORT
	out=$(timeout $((DURATION + 60)) "$WRK" -t1 -c"$B7_CONNS" -d"${DURATION}s" \
		-H "Host: 127.0.0.1:$3" "http://127.0.0.1:$gwport/" 2>&1)
	printf '%s\n' "$out" >> "$TMP/$name.wrk.log"
	reused=$("$TUNNELCTL" -s "$TMP/$name.sock" stats 2>/dev/null | awk -F'\t' '$1=="reused"{print $2}')
	stop_pid "$gw" "$name" || return 1
	if printf '%s\n' "$out" | grep -q "Non-2xx\|Socket errors"; then
		echo "bench: B7 $name: wrk saw errors:" >&2
		printf '%s\n' "$out" >&2
		return 1
	fi
	rps=$(printf '%s\n' "$out" | awk '$1=="Requests/sec:"{print $2}')
	[ -n "$rps" ] || { echo "bench: B7 $name: no Requests/sec from wrk:" >&2; printf '%s\n' "$out" >&2; return 1; }
	echo "$rps ${reused:-0} $(printf '%s\n' "$out" | awk '/requests in/{print $1}')"
}

# median of the numbers on stdin
median() {
	sort -g | awk '{ v[++n] = $1 } END { if (n) print n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

bench_reuse() {
	local run on off r oport npid on_r="" off_r="" on_reuse=""
	if ! command -v "$WRK" >/dev/null 2>&1 || ! command -v "$NGINX" >/dev/null 2>&1; then
		echo "B7: skipped, wrk or nginx is not installed (make bench-deps installs them)"
		return 0
	fi
	start_nginx b7-nginx || return 1
	npid=$PID oport=$PORT
	for run in $(seq "$RUNS"); do
		on=$(b7_once "b7-on-$run" 64 "$oport") || { stop_pid "$npid" b7-nginx; return 1; }
		off=$(b7_once "b7-off-$run" 0 "$oport") || { stop_pid "$npid" b7-nginx; return 1; }
		printf '  B7 run %d: reuse on %s req/s (%s of %s requests reused), off %s req/s\n' "$run" \
			"${on%% *}" "$(echo "$on" | cut -d' ' -f2)" "$(echo "$on" | cut -d' ' -f3)" "${off%% *}"
		on_r="$on_r ${on%% *}" off_r="$off_r ${off%% *}"
	done
	stop_pid "$npid" b7-nginx QUIT || true
	on=$(printf '%s\n' $on_r | median) off=$(printf '%s\n' $off_r | median)
	printf '\nB7 plain HTTP req/s, wrk -c%s %ss -> tunnelgated (direct pool) -> nginx; medians of %s run(s):\n' \
		"$B7_CONNS" "$DURATION" "$RUNS"
	printf '  %-40s %10.0f\n' "reuse on  (upstream_idle_max = 64)" "$on"
	printf '  %-40s %10.0f\n' "reuse off (upstream_idle_max = 0)" "$off"
	awk -v a="$on" -v b="$off" 'BEGIN { if (b > 0) printf "  %-40s %10.2f\n", "on/off", a / b }'
}

# ---- B8: the receiver's CPU per dropped SYN: XDP guard, nftables, or the listener ----
# synflood (raw SYNs, random source ports, GUARD_RATE/s for DURATION s) runs in a network
# namespace of its own and reaches a tunnelgated on 10.212.0.1 through a veth pair:
#   guard  tunnelgated with xdp_interfaces = the veth and deny = the sender's address
#   nft    tunnelgated without the guard; an nftables input-hook rule drops the sender
#   none   tunnelgated without the guard, nothing drops: the listener's SYN queue fills
#          and the kernel answers with SYN cookies
# The receiving veth runs its NAPI in a kernel thread (GRO on, /sys/.../threaded), pinned
# to the last CPU, and the sender to CPU 0; so everything the receiver does for a SYN
# (XDP, or GRO + IP + netfilter + TCP + the SYN-ACK) runs in that thread, and the
# "napi" figure is its run time (/proc/PID/schedstat, ns) per packet it received
# (rx_packets of the veth). The "stat" figure is whole-machine: /proc/stat (all CPUs,
# user+nice+system+irq+softirq) less the sender's own CPU (getrusage) and less an idle
# interval of the same length, per packet; it counts whatever else the machine does, so
# on a shared machine only the napi figure is usable. SYN-ACKs go to a MAC nobody owns
# (a permanent neighbour entry), so the sender's namespace drops them at once instead
# of answering with RSTs. Needs ethtool, and nft for the nft row (BENCH_PKGS).
# Caveats: veth is not a NIC. Its native XDP runs on the sender's skb, and one with
# less than XDP_PACKET_HEADROOM (256 bytes) of headroom, as every locally sent packet
# has, is first copied into a page-pool page; so the guard row pays an skb, a copy and
# two frees that a NIC driver's XDP drop would not, and on veth it lands near the nft
# row; the difference to "none" is what holds on any device. Sender, NAPI thread, the
# daemon and everything else on the machine share its CPUs (2 here): the napi figure
# is robust to other load only as far as caches and interrupts allow (single runs
# varied by up to 2x on a busy machine; RUNS=5 or more there).
GUARD_RATE=${GUARD_RATE:-200000}
SYNFLOOD=${SYNFLOOD:-$OUT/synflood}
GB_NS=""		# the sender's namespace while B8 runs (cleanup() removes it)
GB_IF=""		# the root-namespace end of the veth pair

gb_teardown() {
	nft delete table inet tgb 2>/dev/null
	[ -z "$GB_IF" ] || ip link del "$GB_IF" 2>/dev/null
	[ -z "$GB_NS" ] || ip netns del "$GB_NS" 2>/dev/null
	GB_IF="" GB_NS=""
}

gb_setup() {
	GB_NS=tgb-$$ GB_IF=gb$$a
	ip netns add "$GB_NS" &&
	ip link add "$GB_IF" type veth peer name gb$$b netns "$GB_NS" &&
	ip addr add 10.212.0.1/24 dev "$GB_IF" && ip link set "$GB_IF" up &&
	ip -n "$GB_NS" addr add 10.212.0.2/24 dev gb$$b && ip -n "$GB_NS" link set gb$$b up &&
	ip -n "$GB_NS" link set lo up &&
	# GRO gives the veth a NAPI instance (as XDP does), so every mode receives in it;
	# TSO off on the sender makes its SYNs eligible for it (veth_skb_is_eligible_for_gro)
	ethtool -K "$GB_IF" gro on >/dev/null &&
	ip netns exec "$GB_NS" ethtool -K gb$$b tso off >/dev/null &&
	ip neigh replace 10.212.0.2 lladdr 02:00:00:00:00:01 dev "$GB_IF" nud permanent
}

# gb_napi: the PID of the veth's NAPI thread, after turning threaded NAPI on and pinning
# it to the last CPU. Called after each daemon start (attaching XDP may renew the NAPI).
gb_napi() {
	local p c
	echo 1 > "/sys/class/net/$GB_IF/threaded" || return 1
	for p in /proc/[0-9]*; do
		c=$(cat "$p/comm" 2>/dev/null) || continue
		case $c in "napi/$GB_IF-"*) ;; *) continue ;; esac
		taskset -pc "$(($(nproc) - 1))" "${p#/proc/}" >/dev/null || return 1
		echo "${p#/proc/}"
		return 0
	done
	echo "bench: B8: no NAPI thread for $GB_IF" >&2
	return 1
}

busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# gb_once MODE RUN: one flood against a fresh daemon; prints
# "MODE napi_ns_per_pkt stat_ns_per_pkt rx_pkts sent_rate dropped_count busy_pct_when_idle".
gb_once() {
	local mode=$1 name=b8-$1-$2 extra="" napi gp i rt0 rt1 rx0 rx1 b0 b1 idle out drop
	NINST=$((NINST + 1))
	PORT=$("$TGBENCH" --free-port) || return 1
	[ "$mode" = guard ] && extra="xdp_interfaces = $GB_IF
deny = 10.212.0.2/32"
	cat > "$TMP/$name.conf" <<-EOF
	[gateway]
	listen = 10.212.0.1:$PORT
	relay = splice
	control = $TMP/$name.sock
	bpf_pin_dir = /sys/fs/bpf/tgbench-$$-$NINST
	$extra

	[pool up]
	direct = yes
	EOF
	"$DAEMON" -c "$TMP/$name.conf" >> "$TMP/$name.log" 2>&1 &
	gp=$!
	PIDS+=("$gp")
	for i in $(seq 100); do
		grep -q "listening on" "$TMP/$name.log" 2>/dev/null && break
		kill -0 "$gp" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "listening on" "$TMP/$name.log" || { echo "bench: B8 $name did not start:" >&2; tail -n 20 "$TMP/$name.log" >&2; kill -KILL "$gp"; return 1; }
	if [ "$mode" = nft ]; then
		nft add table inet tgb &&
		nft add chain inet tgb input '{ type filter hook input priority 0; }' &&
		nft add rule inet tgb input ip saddr 10.212.0.2 counter drop || { kill -KILL "$gp"; return 1; }
	fi
	napi=$(gb_napi) || { kill -KILL "$gp"; return 1; }
	# the idle reference: the same interval with nothing sent
	b0=$(busy_ticks); sleep "$DURATION"; idle=$(( $(busy_ticks) - b0 ))
	rt0=$(awk '{ print $1 }' "/proc/$napi/schedstat") rx0=$(cat "/sys/class/net/$GB_IF/statistics/rx_packets")
	b0=$(busy_ticks)
	out=$(ip netns exec "$GB_NS" taskset -c 0 "$SYNFLOOD" --rate "$GUARD_RATE" --duration "$DURATION" \
		10.212.0.2 "10.212.0.1:$PORT") || { echo "bench: B8 synflood failed: $out" >&2; kill -KILL "$gp"; return 1; }
	b1=$(busy_ticks)
	rt1=$(awk '{ print $1 }' "/proc/$napi/schedstat") rx1=$(cat "/sys/class/net/$GB_IF/statistics/rx_packets")
	echo "$out" >> "$TMP/b8.synflood.log"
	case $mode in
	guard) drop=$("$TUNNELCTL" -s "$TMP/$name.sock" stats | awk -F'\t' '$1 == "guard_denied" { print $2 }') ;;
	nft) drop=$(nft list table inet tgb | awk '$1 == "ip" && $2 == "saddr" { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }')
	     nft delete table inet tgb ;;
	none) drop=- ;;
	esac
	stop_pid "$gp" "$name" || return 1
	# the sender's own CPU is the "cpu" field synflood prints (getrusage)
	echo "$out" | awk -v m="$mode" -v rt=$((rt1 - rt0)) -v rx=$((rx1 - rx0)) -v busy=$((b1 - b0)) \
		-v idle="$idle" -v hz="$(getconf CLK_TCK)" -v drop="${drop:--}" -v dur="$DURATION" -v ncpu="$(nproc)" '
		{ for (i = 1; i < NF; i++) { if ($i == "rate") rate = $(i + 1); if ($i == "cpu") snd = $(i + 1) * 1e9 } }
		END { if (rx <= 0) exit 1
			printf "%s %.0f %.0f %d %s %s %.0f\n", m, rt / rx, ((busy - idle) * 1e9 / hz - snd) / rx, rx, rate,
				drop, 100 * idle / (hz * dur * ncpu) }'
}

bench_guard() {
	local run m line napi_med stat_med med_guard="" med_nft="" med_none=""
	if [ ! -x "$SYNFLOOD" ] || ! command -v ethtool >/dev/null 2>&1; then
		echo "B8: skipped, needs $SYNFLOOD (make build/synflood) and ethtool (make bench-deps)"
		return 0
	fi
	gb_setup || { gb_teardown; echo "bench: B8: cannot set up the veth pair and namespace" >&2; return 1; }
	: > "$TMP/b8.res"
	for run in $(seq "$RUNS"); do
		for m in guard nft none; do
			if [ "$m" = nft ] && ! command -v nft >/dev/null 2>&1; then
				[ "$run" = 1 ] && echo "  B8 nft: skipped, nft is not installed (make bench-deps installs it)"
				continue
			fi
			line=$(gb_once "$m" "$run") || { gb_teardown; return 1; }
			echo "$line" >> "$TMP/b8.res"
			echo "$line" | awk -v r="$run" '{ printf "  B8 run %d %-5s napi %5s ns/SYN  stat %6s ns/SYN  received %s  sent %s/s  dropped %s  (machine %s%% busy before, idle)\n", r, $1, $2, $3, $4, $5, $6, $7 }'
		done
	done
	gb_teardown
	printf '\nB8 receiver CPU per SYN: synflood %s SYN/s (target) for %ss from another netns over a veth pair;\n' \
		"$GUARD_RATE" "$DURATION"
	printf 'medians of %s run(s); napi = the receiving NAPI thread'"'"'s run time per received SYN,\n' "$RUNS"
	printf 'stat = /proc/stat less the sender and an idle interval (noisy on a shared machine):\n'
	printf '  %-44s %12s %12s %12s\n' "setup" "napi ns/SYN" "stat ns/SYN" "sent SYN/s"
	for m in guard nft none; do
		grep -q "^$m " "$TMP/b8.res" || continue
		napi_med=$(awk -v m="$m" '$1 == m { print $2 }' "$TMP/b8.res" | median)
		stat_med=$(awk -v m="$m" '$1 == m { print $3 }' "$TMP/b8.res" | median)
		printf '  %-44s %12.0f %12.0f %12.0f\n' "$(case $m in
			guard) echo "guard: XDP deny (tunnelgated xdp_interfaces)" ;;
			nft) echo "nft: nftables input-hook drop" ;;
			none) echo "none: listener, SYN-ACK/cookie per SYN" ;; esac)" \
			"$napi_med" "$stat_med" "$(awk -v m="$m" '$1 == m { print $5 }' "$TMP/b8.res" | median)"
		eval "med_$m=$napi_med"
	done
	printf '  (veth: the XDP row includes the copy of each skb into a page that veth XDP makes; see B8 in tools/bench.sh)\n'
	awk -v g="${med_guard:-}" -v n="${med_nft:-}" -v z="${med_none:-}" 'BEGIN {
		if (g != "" && n != "" && n > 0) printf "  %-44s %12.2f\n", "guard/nft (napi)", g / n
		if (g != "" && z != "" && z > 0) printf "  %-44s %12.2f\n", "guard/none (napi)", g / z }'
}

if [ "$MODE" = reuse ]; then
	# tools/bench.sh reuse: B7 alone.
	bench_reuse || die "B7 failed (see above)"
	exit 0
fi

if [ "$MODE" = guard ]; then
	# tools/bench.sh guard: B8 alone.
	bench_guard || die "B8 failed (see above)"
	exit 0
fi

if [ "$MODE" = smoke ]; then
	echo "bench-smoke: B1..B6 with --verify against one tunnelgated relay=sockmap (direct pool)"
	run_setup sockmap1 "$TMP/smoke.out" all --verify --bytes 64M --tunnels 8 --samples 500 \
		--lat-tunnels 10 --clients 8 --duration 1 --idle 200 --timeout-ms 5000 ||
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
	die "unknown mode '$MODE' (full, smoke, reuse, guard or report DIR)"
fi
mkdir -p "$RES" "$OUT" || die "cannot create $RES"
[ "$MODE" = report ] || echo "bench: $RUNS run(s) of: $SETUPS; BYTES=$BYTES IDLE=$IDLE DURATION=${DURATION}s SAMPLES=$SAMPLES"
start=$(date +%s)
[ "$MODE" = report ] || for run in $(seq "$RUNS"); do
	for s in $SETUPS; do
		t0=$(date +%s)
		if ! have_program "$s"; then
			[ "$run" = 1 ] && echo "  $s: skipped, its program is not installed (make bench-deps installs it)"
			continue
		fi
		run_setup "$s" "$RES/$s.$run" "$TESTS" --bytes "$BYTES" --idle "$IDLE" --duration "$DURATION" \
			--samples "$SAMPLES" || { KEEP_TMP=1; die "run $run of $s failed (see above)"; }
		printf '  run %d %-10s %3ds  %s\n' "$run" "$s" $(($(date +%s) - t0)) \
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
# The better of the one-hop peers squid1 and tinyproxy1 for figure k (higher throughput
# and setup rate, lower latency, CPU and memory); "" when neither ran.
function peer(k,   a, b) { a = val("squid1", k); b = val("tinyproxy1", k)
	if (a == "" || b == "") return a == "" ? (b == "" ? "" : "tinyproxy1") : "squid1"
	if (k ~ /^B[356]_/) return a + 0 <= b + 0 ? "squid1" : "tinyproxy1"
	return a + 0 >= b + 0 ? "squid1" : "tinyproxy1" }
function peer_ratio(k,   p) { p = peer(k); return p == "" ? "-" : ratio("sockmap1", p, k) }
{ med[$1, $2] = $3 }
END {
	ns = split(setups, S, " ")
	# K: chart columns (bench.gnuplot reads them by number: append only). D: table rows.
	nk = split("B1_up_gbps B1_down_gbps B2_down_gbps B3_lat1_p50_us B3_lat1_p99_us B3_lat1_p999_us " \
		"B3_lat100_p50_us B3_lat100_p99_us B3_lat100_p999_us B4_setup_tunnels_per_s " \
		"B5_down_cpu_s_per_gib B6_idle_daemon_bytes_per_tunnel B6_idle_kernel_bytes_per_tunnel " \
		"B1_copied_pct B2_copied_pct", K, " ")
	nd = split("B1_up_gbps B1_down_gbps B1_copied_pct B2_down_gbps B2_copied_pct B3_lat1_p50_us " \
		"B3_lat1_p99_us B3_lat1_p999_us B3_lat100_p50_us B3_lat100_p99_us B3_lat100_p999_us " \
		"B4_setup_tunnels_per_s B5_down_cpu_s_per_gib B6_idle_daemon_bytes_per_tunnel " \
		"B6_idle_kernel_bytes_per_tunnel", D, " ")
	printf "\nMedians of %d run(s). Topologies: direct = client->origin (no relay); sockmap1/splice1 =\n", runs
	printf "client->tunnelgated(direct pool)->origin; squid1/tinyproxy1 = client->squid 5.7 or\n"
	printf "tinyproxy 1.11 (CONNECT, dialing the origin)->origin; sockmap2/splice2/haproxy2 =\n"
	printf "client->GATEWAY->upstream tunnelgated(relay=%s, direct pool)->origin.\n", uprelay
	printf "hold1 = sockmap1 with pause = hold (held bytes copied by the daemon).\n"
	printf "Ratios: sm2/sp2 = sockmap2/splice2, sm2/hap2 = sockmap2/haproxy2, sm1/sp1 = sockmap1/splice1,\n"
	printf "smN/dir = sockmapN/direct, sm1/sq1 = sockmap1/squid1, sm1/tp1 = sockmap1/tinyproxy1,\n"
	printf "sm1/peer = sockmap1/the better of squid1 and tinyproxy1 for that figure.\n"
	printf "B5 is whole-machine CPU (endpoints included); B6 daemon = RSS of the gateway under test.\n"
	printf "copied %% = share of the tunnel bytes of that test the gateway under test copied through\n"
	printf "the daemon (tunnelctl stats bytes_copied / (bytes_kernel + bytes_copied)); relay=sockmap\n"
	printf "tunnelgated only (for sockmap2 the front gateway); - elsewhere or without those counters.\n\n"
	printf "%-33s", "figure"
	for (i = 1; i <= ns; i++) printf " %10s", S[i]
	printf " | %7s %8s %7s %7s %7s %7s %7s %8s\n", "sm2/sp2", "sm2/hap2", "sm1/sp1", "sm1/dir", "sm2/dir",
		"sm1/sq1", "sm1/tp1", "sm1/peer"
	for (j = 1; j <= nd; j++) {
		k = D[j]; printf "%-33s", k
		for (i = 1; i <= ns; i++) printf " %10s", fmt(val(S[i], k))
		printf " | %7s %8s %7s %7s %7s %7s %7s %8s\n", ratio("sockmap2", "splice2", k),
			ratio("sockmap2", "haproxy2", k), ratio("sockmap1", "splice1", k),
			ratio("sockmap1", "direct", k), ratio("sockmap2", "direct", k),
			ratio("sockmap1", "squid1", k), ratio("sockmap1", "tinyproxy1", k), peer_ratio(k)
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

	# Targets of the kernel-pause work (2-hop rows compare like with like).
	printf "\nTargets (2-hop rows compare like with like; direct is compared with the 1-hop sockmap):\n"
	check("B1 sockmap1 copied <= 10%", fmt(val("sockmap1", "B1_copied_pct")), "<=", 10)
	check("B2 sockmap1 copied <= 5%", fmt(val("sockmap1", "B2_copied_pct")), "<=", 5)
	for (j = 1; j <= 3; j++) {
		k = K[j]
		check(k " sockmap1 >= 1.5x splice1", ratio("sockmap1", "splice1", k), ">=", 1.5)
		if (j < 3)
			check(k " sockmap1 >= 0.8x direct", ratio("sockmap1", "direct", k), ">=", 0.8)
		if (j < 3)
			check(k " sockmap2 >= 1.3x haproxy2", ratio("sockmap2", "haproxy2", k), ">=", 1.3)
	}
	k = "B4_setup_tunnels_per_s"; p = peer(k)
	check("B4 sockmap1 >= 1.5x the better of squid1/tinyproxy1", p == "" ? "-" : ratio("sockmap1", p, k),
		">=", 1.5)
	for (j = 1; j <= 2; j++) {
		k = j == 1 ? "B3_lat1_p99_us" : "B3_lat100_p99_us"
		check(k " sockmap2 <= splice2", ratio("sockmap2", "splice2", k), "<=", 1.0)
		check(k " sockmap1 <= splice1", ratio("sockmap1", "splice1", k), "<=", 1.0)
	}
	# B5 counts the endpoints: the relay share is the figure less that of the direct path.
	x = val("sockmap1", "B5_down_cpu_s_per_gib"); y = val("splice1", "B5_down_cpu_s_per_gib")
	z = val("direct", "B5_down_cpu_s_per_gib")
	check("B5 sockmap1 relay share <= 0.4x of splice1 ((sm1 - dir) / (sp1 - dir))",
		(x == "" || y == "" || z == "" || y - z <= 0) ? "-" : sprintf("%.2f", (x - z) / (y - z)), "<=", 0.4)
	for (i = 1; i <= 2; i++) {
		s = i == 1 ? "sockmap1" : "sockmap2"; x = val(s, "B6_idle_daemon_bytes_per_tunnel")
		check("B6 " s " daemon <= 2048 bytes/tunnel", x == "" ? "-" : sprintf("%.0f", x), "<=", 2048)
	}
	# No targets were set against the one-hop proxies: the ratios, for the figures that matter.
	printf "\nOne-hop peers (sockmap1 / the better of squid1 and tinyproxy1; no target set):\n"
	split("B1_up_gbps B1_down_gbps B2_down_gbps B4_setup_tunnels_per_s", P, " ")
	for (j = 1; j <= 4; j++) {
		k = P[j]; p = peer(k)
		if (p == "" || val("sockmap1", k) == "") { printf "  n/a   %s (setup not run)\n", k; continue }
		printf "  %-28s sockmap1 %s / %s %s = %s\n", k, fmt(val("sockmap1", k)), p, fmt(val(p, k)),
			ratio("sockmap1", p, k)
	}
	# workers: sockmap1 runs one per CPU, sockmap1w1 one; squid1w2 is squid in SMP mode.
	printf "\nWorkers (all processes share this machine'"'"'s cores with tgbench and the origin):\n"
	printf "  %-24s %11s %11s %8s %11s %11s %8s\n", "figure", "sockmap1w1", "sockmap1",
		"ratio", "squid1", "squid1w2", "ratio"
	split("B2_down_gbps B4_setup_tunnels_per_s", W, " ")
	for (j = 1; j <= 2; j++) {
		k = W[j]
		printf "  %-24s %11s %11s %8s %11s %11s %8s\n", k, fmt(val("sockmap1w1", k)),
			fmt(val("sockmap1", k)), ratio("sockmap1", "sockmap1w1", k), fmt(val("squid1", k)),
			fmt(val("squid1w2", k)), ratio("squid1w2", "squid1", k)
	}
}
function check(what, got, op, want,   ok) {
	if (got == "-") { printf "  n/a   %s (setup not run)\n", what; return }
	ok = op == ">=" ? got + 0 >= want : got + 0 <= want
	printf "  %-5s %s: %s\n", ok ? "MET" : "MISS", what, got
}
' "$TMP/medians"

[ "$MODE" = report ] || bench_reuse || die "B7 failed (see above)"
[ "$MODE" = report ] || bench_guard || die "B8 failed (see above)"

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
