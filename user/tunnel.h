/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Relaying established tunnels: in the kernel (sockhash + verdict) or with splice(). */
#ifndef TUNNELGATE_TUNNEL_H
#define TUNNELGATE_TUNNEL_H

#include <stdint.h>

#include "gateway.h"

/* Both sockets are connected, both pending buffers flushed: start relaying. */
void tunnel_start(struct conn *c);
/* An epoll event on one of a tunnel's sockets. */
void tunnel_event(struct conn *c, struct handle *h, uint32_t events);
/* Check watched tunnels due now; returns ms until the next check, or -1 for none. */
int tunnel_watch_poll(struct gateway *gw);
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
void tunnel_counters(struct conn *c, struct tunnel_counts *n);
/* The connection closes: log the tunnel, count it, take it out of the relay. */
void tunnel_teardown(struct conn *c);
/* "sockmap", "splice", or "-" for a connection that relays nothing. */
const char *relay_kind_name(enum relay_kind k);

#endif
