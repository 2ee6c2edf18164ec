/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types shared by bpf/guard.bpf.c and the daemon: the XDP listener guard's maps.
 *
 *   guard_ports   hash        __u16 port (host order) -> __u8 1     daemon writes
 *   guard_deny    LPM trie    struct guard_lpm_key -> guard_deny   daemon writes
 *   guard_config  array[1]    __u32 0 -> struct guard_config       daemon writes
 *   guard_syn     LRU hash    struct guard_src -> guard_bucket     program writes
 *   guard_stats   per-CPU [1] __u32 0 -> struct guard_stats        program writes
 *
 * Addresses are 16 bytes in network order, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * as in relay_shared.h, so one deny trie and one bucket table serve both families.
 * The rate limit is a map rather than a .rodata tunable so that a reload can change it
 * without reloading the program.
 */
#ifndef TUNNELGATE_GUARD_SHARED_H
#define TUNNELGATE_GUARD_SHARED_H

/* BPF programs get the __u64 family from vmlinux.h. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Ports in `guard_ports`: one per distinct `listen` port. */
#ifndef GUARD_MAX_PORTS
#define GUARD_MAX_PORTS 256
#endif

/* Prefixes in `guard_deny` (allocated on insert, BPF_F_NO_PREALLOC). */
#ifndef GUARD_MAX_DENY
#define GUARD_MAX_DENY 65536
#endif

/*
 * Token buckets in `guard_syn`. Least recently used sources are evicted first, so a
 * flood from spoofed sources recycles entries instead of filling memory; an evicted
 * source comes back with a full bucket.
 */
#ifndef GUARD_MAX_SOURCES
#define GUARD_MAX_SOURCES 65536
#endif

/* IPv6 sources share a bucket per /64 (one host's usual allocation); IPv4 per /32. */
#define GUARD_SRC6_PREFIX 64

/*
 * Token fixed point: a bucket holds tokens * GUARD_TOKEN and one SYN costs GUARD_TOKEN,
 * so a nanosecond at syn_rate per second refills syn_rate units.
 */
#define GUARD_TOKEN 1000000000ULL

/*
 * Key of `guard_deny` (an LPM trie, BPF_F_NO_PREALLOC): prefixlen counts bits of
 * addr, so an IPv4 a.b.c.d/len is ::ffff:a.b.c.d with prefixlen 96 + len. Bits of
 * addr past prefixlen should be zero (the trie ignores them, `list` would show them).
 */
struct guard_lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Where a `guard_deny` entry came from; the program never reads it (any entry denies). */
#define GUARD_DENY_CONFIG 0x1 /* `deny =` in the config file: replaced on SIGHUP */
#define GUARD_DENY_CTL 0x2    /* `tunnelctl deny add`: kept until deleted */

/* Value of `guard_deny`. */
struct guard_deny {
	__u32 origin; /* GUARD_DENY_* bits */
};

/*
 * Value of `guard_config` (an array of one entry, key 0). The daemon may rewrite it
 * at any time; the next SYN of each source refills at the new rate.
 */
struct guard_config {
	__u32 syn_rate;  /* SYNs per second per source; 0 = no limit */
	__u32 syn_burst; /* bucket size in SYNs; 0 counts as 1 */
};

/*
 * Key of `guard_syn`: the source address, IPv6 with its last 64 bits zero, IPv4
 * mapped and whole.
 */
struct guard_src {
	__u8 addr[16];
};

/* Value of `guard_syn`: one source's token bucket. Written by the program only. */
struct guard_bucket {
	__u64 tokens;  /* tokens * GUARD_TOKEN */
	__u64 last_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last refill */
};

/*
 * Value of `guard_stats` (a per-CPU array of one entry, key 0): what became of each
 * packet the program saw. Every packet counts in exactly one field; userspace sums
 * the CPUs.
 */
struct guard_stats {
	__u64 passed;       /* TCP to a listen port, judged and passed */
	__u64 denied;       /* TCP to a listen port from a `guard_deny` source: dropped */
	__u64 rate_limited; /* SYN to a listen port over its source's bucket: dropped */
	__u64 not_judged;   /* anything else, passed: other ports, not TCP, not IP,
			     * non-first fragments, IPv6 ESP or too many extension headers */
	__u64 malformed;    /* headers cut short by the frame or the IP length, or an
			     * IPv4 IHL under 5: passed, the stack drops them */
};

#endif
