/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types of an established tunnel and of the relays that move its bytes. */
#ifndef TUNNELGATE_TUNNEL_T_H
#define TUNNELGATE_TUNNEL_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ev.h"
#include "hist.h"

struct conn;
struct relay;

enum relay_kind { RK_NONE, RK_SOCKMAP, RK_SPLICE };

/* What a relay step asks of tunnel.c. */
enum relay_step {
	RELAY_IDLE,              /* nothing to do until the next epoll event */
	RELAY_POLL,              /* look again soon: a FIN hand-over or held bytes wait */
	RELAY_DONE,              /* both directions ended cleanly: close */
	RELAY_FAIL,              /* reset both sides now (t->fail_why) */
	RELAY_PEER_RESET,        /* the source of t->fail_dir failed (t->fail_why): deliver
				  * what it sent, then reset the other side */
};

/* One direction of a splice relay. */
struct splice_dir {
	int pipe[2];
	size_t in_pipe;          /* bytes in the pipe, not yet written to the peer */
	bool in_blocked;         /* the pipe took no more (its slots, not bytes, ran out):
				  * read again once bytes leave it */
	bool eof;                /* source socket sent FIN */
	bool shut;               /* shutdown(peer, SHUT_WR) done */
};

/* One direction of a kernel relay, for the FIN hand-over and flow control. */
struct kdir {
	uint64_t read_before;    /* bytes the daemon read from the source socket */
	uint64_t peer_base;      /* bytes the daemon wrote into the peer before the hand-off */
	uint64_t released;       /* held bytes the daemon copied to the peer */
	uint64_t release_sent;   /* `released` as last written to the released map */
	uint64_t fin_received;   /* the source's tcpi_bytes_received once its FIN came */
	char *hold_buf;          /* held bytes read, not yet written to the peer */
	size_t hold_len, hold_off;
	bool eof, shut;
	bool holding;            /* the verdict program holds bytes on the source socket */
	bool paused;             /* the sockops program took the source out of `ingress` */
	bool tail;               /* paused and cannot rejoin (not established any more):
				  * the daemon copies the rest of the stream itself */
	bool tail_eof;           /* tail: the source's end of stream was read */
	uint64_t resumes;        /* the `pauses` count of the source's end at the last resume */
	uint64_t tail_copied;    /* tail: bytes the daemon copied to the peer */
	uint64_t stuck_max;      /* most held bytes seen queued behind the other direction's */
	bool wait;               /* holding, and only polling helps: redirected bytes still
				  * drain into the peer, or held bytes are still on their way
				  * into the source socket (queued behind the other direction's) */
};

/* Tunnel bytes per direction (TG_DIR_UP, TG_DIR_DOWN) by the path they took. */
struct tunnel_paths {
	uint64_t kernel[2];      /* relayed by the BPF program */
	uint64_t copied[2];      /* of a kernel relay tunnel, copied by the daemon */
	uint64_t spliced[2];     /* of a splice tunnel (its hand-off included) */
};

/* Counters of the relays, of open and closed tunnels. */
struct relay_stats {
	uint64_t tunnels_total, tunnels_sockmap, tunnels_splice;
	uint64_t holds;          /* times a slow peer made the kernel relay hold bytes */
	uint64_t pauses;         /* times a slow peer made the kernel relay pause a direction */
	/* Of closed tunnels: all bytes, and of the kernel relay's, those the daemon copied. */
	uint64_t bytes_up, bytes_down, bytes_kernel, bytes_copied;
	struct tunnel_paths paths; /* of closed tunnels: bytes by the path they took */
	struct hist duration;    /* tunnel lifetimes, observed at teardown */
};

/* What every tunnel shares: the relays, the bounds they enforce now, the watch list. */
struct tunnels {
	struct relay *relay;     /* the kernel relay; NULL: splice only */
	enum relay_kind default_kind;
	uint64_t max_backlog;    /* bytes per direction, as the verdict program has it now */
	unsigned open;
	struct tunnel *watch;    /* polled for a FIN hand-over, held bytes, resume or reset */
	struct relay_stats stats;
};

struct tunnel {
	uint64_t id;
	enum relay_kind kind;
	struct tunnels *set;
	struct conn *conn;       /* its connection; only tunnel.c touches it */
	struct handle *h[2];     /* the source socket of [TG_DIR_UP] (client), [TG_DIR_DOWN] */
	uint64_t start_ms, last_ms;
	/* Bytes the daemon wrote to the peer before the relay started (fixed from then on). */
	uint64_t handoff[2];
	/* Splice relay: bytes written to the peer since it started. */
	uint64_t spliced[2];
	bool queues_unread;      /* bytes may wait unread: the kernel relay cannot take it */
	bool closing;            /* torn down: the relay lets go of the sockets */

	struct splice_dir sdir[2];
	struct kdir kd[2];
	uint64_t cookie[2];      /* kernel relay: socket cookies of the client and upstream */

	/*
	 * The direction whose source sent the first FIN the daemon saw (TG_DIR_UP: the
	 * client's): a clean end is logged as client_fin or upstream_fin by it.
	 */
	bool fin_seen;
	int fin_first;

	int fail_dir;            /* RELAY_PEER_RESET: the direction whose source failed */
	const char *fail_why;
	bool rst;                /* one side reset: delivering to the other, then resetting it */
	uint64_t rst_deadline_ms;

	bool watched;            /* on set->watch */
	struct tunnel *watch_next;
	unsigned watch_backoff_ms;
	uint64_t watch_at_ms;
};

/* The source and destination sockets of direction @d (TG_DIR_UP: client to upstream). */
static inline int dir_src(const struct tunnel *t, int d)
{
	return t->h[d]->fd;
}

static inline int dir_dst(const struct tunnel *t, int d)
{
	return t->h[!d]->fd;
}

/* A socket a relay needs nothing more from (read side ended, write side shut) leaves epoll. */
static inline void tunnel_drop_if_done(struct handle *h, bool read_done, bool write_done)
{
	if (read_done && write_done)
		ev_del(h);
}

/* The relays call this when direction @d's source sent its FIN; the first one stays. */
static inline void tunnel_note_fin(struct tunnel *t, int d)
{
	if (t->fin_seen)
		return;
	t->fin_seen = true;
	t->fin_first = d;
}

/* Counters of an open tunnel as the CLI shows them. */
struct tunnel_counts {
	uint64_t up, down;      /* bytes client -> upstream and back, all of them */
	/*
	 * Of those, the bytes the daemon copied itself: forwarded before the hand-off,
	 * held, and the tail after a pause that could not be undone. 0 for splice.
	 */
	uint64_t copied_up, copied_down;
	uint64_t idle_ms;       /* since the last byte either way */
};

/* Add the bytes @n of a tunnel relayed by @kind to @p. */
static inline void tunnel_split_bytes(enum relay_kind kind, const struct tunnel_counts *n,
				      struct tunnel_paths *p)
{
	if (kind != RK_SOCKMAP) {
		p->spliced[0] += n->up;
		p->spliced[1] += n->down;
		return;
	}
	p->kernel[0] += n->up - n->copied_up;
	p->kernel[1] += n->down - n->copied_down;
	p->copied[0] += n->copied_up;
	p->copied[1] += n->copied_down;
}

#endif
