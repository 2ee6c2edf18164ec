// SPDX-License-Identifier: GPL-2.0
/*
 * Two-way relay: bytes arriving on socks[0] go to the egress of socks[1] and
 * the other way round. Counts the empty skbs (a FIN) the verdict is handed.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sockhash.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SOCKHASH(socks);

__u64 cookie0;          /* socket cookie of socks[0], set by userspace */
__u64 runs[2], bytes[2], empty[2], empty_verdict[2];
__u32 drop_empty;       /* set by userspace: drop empty skbs instead of redirecting */
__u32 pass_c;           /* set by userspace: keep bytes arriving on socks[1] on it (SK_PASS) */

SEC("sk_skb/stream_verdict")
int relay(struct __sk_buff *skb)
{
	__u32 from = bpf_get_socket_cookie(skb) == cookie0 ? 0 : 1;
	__u32 to = !from;
	int v;

	__sync_fetch_and_add(&runs[from], 1);
	__sync_fetch_and_add(&bytes[from], skb->len);
	if (!skb->len && drop_empty) {
		__sync_fetch_and_add(&empty[from], 1);
		return SK_DROP;
	}
	if (from == 1 && pass_c)
		return SK_PASS;
	v = bpf_sk_redirect_hash(skb, &socks, &to, 0);
	if (!skb->len) {
		__sync_fetch_and_add(&empty[from], 1);
		empty_verdict[from] = v;
	}
	return v;
}
