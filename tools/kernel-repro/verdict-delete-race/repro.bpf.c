// SPDX-License-Identifier: GPL-2.0
/* Redirect every skb arriving on a socket of `verdict` to the egress of `out`[0]. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sockhash.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SOCKHASH(verdict);

SOCKHASH(out);

__u64 runs, bytes;

SEC("sk_skb/stream_verdict")
int relay(struct __sk_buff *skb)
{
	__u32 key = 0;

	__sync_fetch_and_add(&runs, 1);
	__sync_fetch_and_add(&bytes, skb->len);
	return bpf_sk_redirect_hash(skb, &out, &key, 0);
}
