// SPDX-License-Identifier: GPL-2.0
/*
 * Redirect every skb arriving on a socket of `verdict` to the egress of `out`[0],
 * and count skbs whose TCP sequence range starts before the end of what the
 * program has already been handed (bytes it is given a second time).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "sockhash.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define SK_PASS 1

SOCKHASH(verdict);

SOCKHASH(out);

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

__u64 runs, bytes, overlaps, overlap_bytes;
__u32 next_seq, have_next, first_overlap_seq, first_overlap_len, first_overlap_old;
/* Largest amount by which the socket's copied_seq was found ahead of rcv_nxt. */
__s32 copied_ahead_max;
__u64 copied_ahead_runs;

SEC("sk_skb/stream_verdict")
int relay(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)kskb->cb;
	__u32 seq = cb->seq, len = skb->len, end = seq + len, key = 0;

	struct bpf_sock *sk = skb->sk;
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;

	runs++;
	bytes += len;
	if (tp) {
		__s32 ahead = (__s32)(tp->copied_seq - tp->rcv_nxt);

		if (ahead > 0) {
			copied_ahead_runs++;
			if (ahead > copied_ahead_max)
				copied_ahead_max = ahead;
		}
	}
	if (len && have_next && (__s32)(next_seq - seq) > 0) {
		__u32 old = next_seq - seq;

		if (old > len)
			old = len;
		if (!overlaps) {
			first_overlap_seq = seq;
			first_overlap_len = len;
			first_overlap_old = old;
		}
		overlaps++;
		overlap_bytes += old;
	}
	if (len && (!have_next || (__s32)(end - next_seq) > 0)) {
		next_seq = end;
		have_next = 1;
	}
	return bpf_sk_redirect_hash(skb, &out, &key, 0);
}
