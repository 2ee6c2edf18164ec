// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Tunnel relay in the kernel: bytes that arrive on one socket of a tunnel are
 * redirected to the egress of its peer socket, and counted.
 *
 * Every relay socket sits in `socks` (no program: it keeps the socket's psock and is
 * the redirect target) and in `ingress` (the verdict program is attached to it).
 * Deleting a socket from `ingress` alone pauses its direction: its bytes then stay in
 * its own receive queue and TCP flow control slows the sender.
 *
 * Redirected bytes wait in a kernel queue, with no memory limit, until the peer's send
 * path takes them. The program measures that backlog on every skb (bytes it redirected
 * minus the growth of the peer's write_seq) and asks the daemon, through `events`, to
 * pause a direction whose backlog crosses max_backlog. Nothing is sent while readers
 * keep up.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "relay_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bound on a direction's backlog in bytes (max_backlog_bytes); 0 = not checked. */
__u64 max_backlog = 0;

/* Redirect targets: socket cookie -> socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(__u32));
} socks SEC(".maps");

/* Sockets whose incoming bytes are relayed now: socket cookie -> socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(__u32));
} ingress SEC(".maps");

/* Relay sockets: socket cookie -> peer, tunnel, flow control state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * TG_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, struct tg_end);
} ends SEC(".maps");

/* Open tunnels: tunnel id -> counters and addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TG_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, struct tg_tunnel);
} tunnels SEC(".maps");

/* Pause requests to the daemon: struct tg_event records. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline void count(struct tg_tunnel *t, __u32 dir, __u64 len)
{
	if (dir == TG_DIR_UP)
		__sync_fetch_and_add(&t->bytes_up, len);
	else
		__sync_fetch_and_add(&t->bytes_down, len);
	t->last_ns = bpf_ktime_get_ns();
}

/* Bytes redirected from @end's socket that its peer's send path has not taken yet. */
static __always_inline void check_backlog(struct tg_end *end, __u32 len)
{
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	struct tg_event *ev;
	__u32 seq, backlog;

	if (!max_backlog)
		return;
	sk = bpf_map_lookup_elem(&socks, &end->peer_cookie);
	if (!sk)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		goto out;
	seq = tp->write_seq;
	if (!end->seq0_set) {
		end->peer_seq0 = seq;
		end->seq0_set = 1;
	}
	/* Modulo 2^32: exact while the backlog stays under 4 GiB. */
	backlog = (__u32)end->relayed - (seq - end->peer_seq0);
	if (end->paused || (__u64)backlog + len <= max_backlog)
		goto out;
	end->paused = 1;
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (ev) {
		ev->tunnel_id = end->tunnel_id;
		ev->dir = end->dir;
		ev->pad = 0;
		bpf_ringbuf_submit(ev, 0);
	}
out:
	bpf_sk_release(sk);
}

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct tg_tunnel *t;
	struct tg_end *end;
	__u64 peer;
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
	check_backlog(end, skb->len);
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
