// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Tunnel relay in the kernel: bytes that arrive on one socket of a tunnel are
 * redirected to the egress of its peer socket, and counted.
 *
 * Every relay socket sits in `socks` (no program: it keeps the socket's psock and is
 * the redirect target) and in `ingress` (the verdict program is attached to it).
 * Deleting a socket from `ingress` alone pauses its direction: its bytes then stay in
 * its own receive queue.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "relay_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* Relay sockets: socket cookie -> peer and tunnel. */
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

static __always_inline void count(struct tg_tunnel *t, __u32 dir, __u64 len)
{
	if (dir == TG_DIR_UP)
		__sync_fetch_and_add(&t->bytes_up, len);
	else
		__sync_fetch_and_add(&t->bytes_down, len);
	t->last_ns = bpf_ktime_get_ns();
}

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct tg_tunnel *t;
	struct tg_end *end;
	__u64 peer;
	int verdict;

	end = bpf_map_lookup_elem(&ends, &cookie);
	if (!end)
		return SK_DROP;
	peer = end->peer_cookie;
	verdict = bpf_sk_redirect_hash(skb, &socks, &peer, 0);
	if (verdict != SK_PASS)
		return verdict;
	t = bpf_map_lookup_elem(&tunnels, &end->tunnel_id);
	if (t)
		count(t, end->dir, skb->len);
	return SK_PASS;
}
