/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types shared by bpf/relay.bpf.c and the daemon: the tunnel relay maps. */
#ifndef TUNNELGATE_RELAY_SHARED_H
#define TUNNELGATE_RELAY_SHARED_H

/* BPF programs get the __u64 family from vmlinux.h. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Upper bound on open tunnels; each uses two sockhash entries. */
#ifndef TG_MAX_TUNNELS
#define TG_MAX_TUNNELS 65536
#endif

/* Direction of a relayed byte, from the point of view of the client. */
enum tg_dir {
	TG_DIR_UP = 0,   /* client -> upstream */
	TG_DIR_DOWN = 1, /* upstream -> client */
};

/*
 * One open tunnel (value of the `tunnels` map, keyed by tunnel id).
 * Addresses are IPv6 or IPv4-mapped IPv6, ports in network order.
 * The counters are written by the BPF programs only (relay_count_copy for the bytes
 * the daemon copies); the rest by the daemon when the tunnel starts.
 */
struct tg_tunnel {
	__u64 id;
	__u64 bytes_up;   /* client -> upstream bytes, all of them */
	__u64 bytes_down; /* upstream -> client bytes, all of them */
	__u64 last_ns;    /* CLOCK_MONOTONIC time of the last relayed byte */
	__u64 start_ns;   /* CLOCK_MONOTONIC time the tunnel was handed to the kernel */
	__u64 copied_up;  /* of bytes_up, those the daemon copied (not relayed in the kernel) */
	__u64 copied_down; /* of bytes_down, likewise */
	__u8 client_addr[16];
	__u8 upstream_addr[16];
	__be16 client_port;
	__be16 upstream_port;
	__u32 pad;
};

/* Argument of the relay_count_copy program: the daemon copied @bytes of @dir. */
struct tg_copy {
	__u64 tunnel_id;
	__u64 bytes;
	__u32 dir;         /* enum tg_dir */
	__u32 pad;
};

/*
 * Default bound on bytes redirected from one socket but not yet taken by its peer's
 * TCP send path (max_backlog_bytes).
 */
#ifndef TG_DEFAULT_MAX_BACKLOG
#define TG_DEFAULT_MAX_BACKLOG (4u << 20)
#endif

/*
 * One relay socket (value of the `ends` map, keyed by socket cookie). The verdict and
 * sockops programs write it, both under the socket's lock; the daemon only reads it
 * after relay_add().
 */
struct tg_end {
	__u64 peer_cookie; /* where bytes read from this socket go */
	__u64 tunnel_id;
	__u64 relayed;     /* bytes redirected to the peer */
	__u64 held;        /* bytes kept on this socket (SK_PASS) while the peer lags */
	__u64 trimmed;     /* retransmitted bytes the program saw twice and removed */
	__u64 peak;        /* largest backlog seen: bytes redirected, not yet sent by the peer */
	__u64 lost;        /* bytes dropped because their old part could not be trimmed */
	__u64 pauses;      /* times the sockops program took this socket out of `ingress` */
	__u32 dir;         /* enum tg_dir of bytes read from this socket */
	__u32 peer_seq0;   /* the peer's write_seq before the first redirected byte */
	__u32 next_seq;    /* TCP sequence number of the next new byte on this socket */
	__u8 seq0_set;
	__u8 next_set;
	__u8 pause_req;    /* the verdict asks the sockops program to pause this socket */
	__u8 pad;
};

#endif
