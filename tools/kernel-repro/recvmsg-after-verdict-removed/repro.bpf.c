// SPDX-License-Identifier: GPL-2.0
/* Keep every skb arriving on a socket of `verdict` on that socket (SK_PASS). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sockhash.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SOCKHASH(verdict);

/* No program on this one: a socket in it keeps its psock after it leaves `verdict`. */
SOCKHASH(keep);

__u64 runs, bytes;

SEC("sk_skb/stream_verdict")
int pass(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&runs, 1);
	__sync_fetch_and_add(&bytes, skb->len);
	return SK_PASS;
}
