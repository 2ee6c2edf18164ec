// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Tunnel relay in the kernel: bytes that arrive on one socket of a tunnel are
 * redirected to the egress of its peer socket, and counted.
 *
 * Every relay socket sits in `socks` (no program: the redirect target) and in
 * `ingress` (the verdict program is attached to it).
 *
 * Flow control. Redirected bytes wait in a kernel queue, with no memory limit, until
 * the peer's send path takes them. The program measures that backlog on every skb
 * (bytes it redirected minus the growth of the peer's write_seq). In pause mode, past
 * max_backlog or with little room left in the peer's send buffer, it asks for a pause
 * and the sockops program below takes the socket out of `ingress`: its bytes wait in
 * its TCP receive queue until the daemon puts it back. Past the room in the peer's send
 * buffer (and in hold mode past max_backlog) it keeps the skb on its own socket instead
 * (SK_PASS): the bytes are charged to that socket's receive buffer, so its TCP window
 * closes and the sender slows down, and the socket turns readable for the daemon.
 * Once the peer has taken every redirected byte, the daemon reads the held bytes and
 * writes them to the peer itself, then records how many it released in `released`;
 * redirecting starts again only when all held bytes are released, so nothing is
 * reordered.
 *
 * Retransmissions. A segment that overlaps bytes already received (a retransmission
 * merged with later data) is queued whole, its sequence number before rcv_nxt.
 * recvmsg() skips the old part; the kernel's skb reader does not, so those bytes would
 * be relayed twice. The program tracks the next new sequence number of each socket
 * and pulls the old bytes off the head of such an skb first.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "relay_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bound on a direction's backlog in bytes (max_backlog_bytes); 0 = unbounded. */
__u64 max_backlog = TG_DEFAULT_MAX_BACKLOG;
/* 1 once relay_sockops is attached: a lagging direction is paused, not held. */
__u32 pause_enabled;
/*
 * Pause mode: how far past max_backlog a direction may run before the pause takes hold
 * (the socket's receive buffer: what can arrive before the verdict stops); past it,
 * bytes are held as in hold mode.
 */
__u64 pause_slack;

/* Redirect targets: socket cookie -> socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(__u32));
} socks SEC(".maps");

/* Sockets whose incoming bytes go through the verdict program: cookie -> socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(__u32));
} ingress SEC(".maps");

/* Relay sockets: socket cookie -> peer, tunnel, flow control counters. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, struct tg_end);
} ends SEC(".maps");

/* Held bytes the daemon has written to the peer: socket cookie -> bytes (daemon writes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, __u64);
} released SEC(".maps");

/* Open tunnels: tunnel id -> counters and addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TG_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, struct tg_tunnel);
} tunnels SEC(".maps");

static __always_inline void count(struct tg_tunnel *t, __u32 dir, __u64 len)
{
	if (dir == TG_DIR_UP)
		__sync_fetch_and_add(&t->bytes_up, len);
	else
		__sync_fetch_and_add(&t->bytes_down, len);
	t->last_ns = bpf_ktime_get_ns();
}

/*
 * Run by the daemon (BPF_PROG_RUN) when it has copied bytes of a tunnel itself (held
 * bytes, a tail): they count in the totals and in copied_*, atomically with the
 * verdict's own additions, which a map update from userspace would overwrite.
 */
SEC("syscall")
int relay_count_copy(struct tg_copy *a)
{
	__u64 id = a->tunnel_id;
	struct tg_tunnel *t = bpf_map_lookup_elem(&tunnels, &id);

	if (!t)
		return 0;
	count(t, a->dir, a->bytes);
	if (a->dir == TG_DIR_UP)
		__sync_fetch_and_add(&t->copied_up, a->bytes);
	else
		__sync_fetch_and_add(&t->copied_down, a->bytes);
	return 0;
}

/* Held bytes of this socket the daemon has written to the peer. */
static __always_inline __u64 released_bytes(struct tg_end *end, __u64 *cookie)
{
	__u64 *rel;

	if (!end->held)
		return 0;
	rel = bpf_map_lookup_elem(&released, cookie);
	return rel ? *rel : 0;
}

/* What over_backlog() finds for one skb. */
enum lag {
	LAG_OK,    /* redirect */
	LAG_PAUSE, /* redirect, and pause the socket soon (pause mode only) */
	LAG_HOLD,  /* keep the skb on this socket: the peer cannot take it now */
};

/*
 * How far the peer's send path lags behind this direction. What entered the peer is
 * what was redirected plus the held bytes the daemon wrote.
 */
static __always_inline enum lag over_backlog(struct tg_end *end, __u64 rel, __u32 len)
{
	enum lag lag = LAG_OK;
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	struct sock *psk;
	__u32 seq, backlog;
	__s64 need, room;

	if (!max_backlog)
		return LAG_OK;
	sk = bpf_map_lookup_elem(&socks, &end->peer_cookie);
	if (!sk)
		return LAG_OK;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		goto out;
	seq = tp->write_seq;
	if (!end->seq0_set) {
		end->peer_seq0 = seq;
		end->seq0_set = 1;
	}
	/* Modulo 2^32: exact while the backlog stays under 4 GiB. */
	backlog = (__u32)(end->relayed + rel) - (seq - end->peer_seq0);
	if (backlog > end->peak)
		end->peak = backlog;
	need = (__s64)backlog + len;
	/*
	 * Redirect only what the peer's send buffer can take now: then the kernel worker
	 * never finds it full, and the peer's queue of redirected bytes empties at once.
	 * Bytes this peer holds for the other direction wait in that same queue, and only
	 * there are they charged to no socket.
	 */
	psk = &tp->inet_conn.icsk_inet.sk;
	room = (__s64)psk->sk_sndbuf - psk->sk_wmem_queued;
	if (need > room)
		lag = LAG_HOLD;
	else if (!pause_enabled)
		lag = need > (__s64)max_backlog ? LAG_HOLD : LAG_OK;
	else if (backlog > max_backlog + pause_slack)
		lag = LAG_HOLD;
	/*
	 * Pause mode: past the bound, or with less than a quarter of the send buffer free:
	 * what the verdict sees before the pause takes hold is still redirected.
	 */
	else if (need > (__s64)max_backlog || need + (__s64)((__u32)psk->sk_sndbuf >> 2) > room)
		lag = LAG_PAUSE;
out:
	bpf_sk_release(sk);
	return lag;
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* bpf_skb_adjust_room() removes at most this many bytes per call on sk_skb. */
#define TRIM_STEP 4095
/* Bound on one skb's old bytes: TRIM_STEP * TRIM_ROUNDS = 1 MiB. */
#define TRIM_ROUNDS 256

/*
 * Drop the bytes of @skb that the program has seen before. Returns 0, or -1 if they
 * could not all be removed: the caller then drops the skb and counts it in `lost`,
 * and the daemon resets the tunnel (a stream with a gap must not look complete).
 */
static __always_inline int trim_old(struct __sk_buff *skb, struct tg_end *end, __u64 *cookie)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)kskb->cb;
	__u32 seq = cb->seq, last = seq + skb->len, old;

	if (!end->next_set) {
		/* First skb since the hand-off: what the daemon read ends at copied_seq. */
		struct bpf_sock *sk = bpf_map_lookup_elem(&socks, cookie);
		struct tcp_sock *tp;

		if (!sk)
			return 0;
		tp = bpf_skc_to_tcp_sock(sk);
		if (tp) {
			end->next_seq = tp->copied_seq;
			end->next_set = 1;
		}
		bpf_sk_release(sk);
		if (!end->next_set)
			return 0;
	}
	old = end->next_seq - seq;
	if ((__s32)old <= 0)
		goto done;
	if (old > skb->len)
		old = skb->len;
	end->trimmed += old;
	for (int i = 0; i < TRIM_ROUNDS && old; i++) {
		__u32 n = old < TRIM_STEP ? old : TRIM_STEP;

		if (bpf_skb_adjust_room(skb, -(__s32)n, 0, 0))
			return -1;
		old -= n;
	}
	if (old)
		return -1;
done:
	if ((__s32)(last - end->next_seq) > 0)
		end->next_seq = last;
	return 0;
}

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct tg_tunnel *t;
	struct tg_end *end;
	__u64 peer, rel;
	enum lag lag;
	int verdict;

	/*
	 * A FIN reaches the verdict as an empty skb. Redirected, the peer's send path
	 * reports the empty send as EPIPE and stops; the daemon sees the FIN in the
	 * socket state instead and passes it on itself.
	 */
	if (!skb->len)
		return SK_DROP;
	end = bpf_map_lookup_elem(&ends, &cookie);
	if (!end)
		return SK_DROP;
	if (trim_old(skb, end, &cookie)) {
		end->lost += skb->len;
		return SK_DROP;
	}
	if (!skb->len)
		return SK_DROP; /* nothing new in it */
	rel = released_bytes(end, &cookie);
	lag = rel != end->held ? LAG_HOLD : over_backlog(end, rel, skb->len);
	if (lag != LAG_OK)
		end->pause_req = pause_enabled;
	if (lag == LAG_HOLD) {
		end->held += skb->len;
		return SK_PASS;
	}
	peer = end->peer_cookie;
	verdict = bpf_sk_redirect_hash(skb, &socks, &peer, 0);
	if (verdict != SK_PASS)
		return verdict;
	end->relayed += skb->len;
	t = bpf_map_lookup_elem(&tunnels, &end->tunnel_id);
	if (t)
		count(t, end->dir, skb->len);
	return SK_PASS;
}

/*
 * Pause: take a socket whose direction lags out of `ingress`, so the verdict stops
 * running and new bytes stay in its TCP receive queue, charged to its receive buffer:
 * the window closes and nothing is copied. A delete from userspace races with a
 * verdict pass on another CPU (it takes only the map's bucket lock, and a pass that
 * finds no program drops its skb); sockops callbacks run with the socket locked, as
 * the verdict does, so this delete cannot overlap one. HDR_OPT_LEN fires for every
 * segment the socket sends, ACKs included, so a receiving socket gets here soon.
 * Only with an empty receive queue: the ACK may be sent from inside the verdict loop
 * (tcp_eat_skb), and the skbs still queued there would meet no program. And only with
 * every held byte released: out of `ingress` the socket reads its held queue without
 * advancing copied_seq (tcp_bpf_recvmsg), after which recvmsg() on the TCP queue finds
 * the sequence numbers off and reports an end of stream with bytes still queued. The
 * daemon puts the socket back (a syscall update takes the socket lock) once the peer
 * drained.
 */
static __always_inline void pause_now(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp;
	struct tg_end *end;

	end = bpf_map_lookup_elem(&ends, &cookie);
	if (!end || !end->pause_req || !sk || released_bytes(end, &cookie) != end->held)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || tp->inet_conn.icsk_inet.sk.sk_receive_queue.qlen)
		return;
	if (bpf_map_delete_elem(&ingress, &cookie))
		return;
	end->pause_req = 0;
	end->pauses++;
}

SEC("sockops")
int relay_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		pause_now(skops);
		break;
	}
	return 1;
}
