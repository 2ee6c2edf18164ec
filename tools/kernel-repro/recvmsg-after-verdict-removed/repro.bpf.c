// SPDX-License-Identifier: GPL-2.0
/* Keep every skb arriving on a socket of `verdict` on that socket (SK_PASS). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} verdict SEC(".maps");

/* No program on this one: a socket in it keeps its psock after it leaves `verdict`. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} keep SEC(".maps");

__u64 runs, bytes;

SEC("sk_skb/stream_verdict")
int pass(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&runs, 1);
	__sync_fetch_and_add(&bytes, skb->len);
	return SK_PASS;
}
