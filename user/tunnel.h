/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Established tunnels (CS_ESTABLISHED, CS_HANDOFF, CS_TUNNEL): the hand-off of the
 * bytes the daemon read past the heads, then the relay (kernel or splice), the reset
 * drain, the watch list that polls what epoll cannot tell, and the teardown.
 */
#ifndef TUNNELGATE_TUNNEL_H
#define TUNNELGATE_TUNNEL_H

#include <stdint.h>

#include "config.h"
#include "conn-t.h"
#include "tunnel-t.h"

/* CS_ESTABLISHED: write what was read past the heads, then start the relay. */
void tunnel_handoff(struct conn *c);
/* CS_HANDOFF: a socket turned writable. */
void tunnel_handoff_event(struct conn *c);
/* CS_TUNNEL: an epoll event on one of the tunnel's sockets. */
void tunnel_event(struct conn *c, struct handle *h, uint32_t events);
/* Check watched tunnels due now; returns ms until the next check, or -1 for none. */
int tunnel_watch_poll(struct tunnels *ts);
/* Counters of an open tunnel. */
void tunnel_counters(const struct tunnel *t, struct tunnel_counts *n);
/*
 * Take the relay bounds of @cfg (max_backlog_bytes, relay socket buffers): tunnels
 * open and new read the same bound the verdict program enforces.
 */
void tunnels_set_bounds(struct tunnels *ts, const struct config *cfg);
/* "sockmap", "splice", or "-" for a connection that relays nothing. */
const char *relay_kind_name(enum relay_kind k);

#endif
