/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The listening sockets of `listen`, kept across reloads when their address stays. */
#ifndef TUNNELGATE_LISTENER_H
#define TUNNELGATE_LISTENER_H

#include "config.h"
#include "gateway-t.h"

/*
 * Make @gw's listeners match @cfg: keep sockets whose address did not change, open
 * the new ones, close the rest. Returns 0, or -EADDRNOTAVAIL with the old set kept.
 * With several workers the sockets are SO_REUSEPORT, and the owner's (worker 0) first
 * checks that no other process listens there. @arm: poll them now (from the worker's
 * own thread); else listeners_arm() does it there later.
 */
int listeners_sync(struct gateway *gw, const struct config *cfg, bool arm);
/* Poll @gw's listeners that are not polled yet (unless accepting is paused). */
void listeners_arm(struct gateway *gw);
/*
 * True if a connection to @to would reach one of @gw's own listeners: its address,
 * or any local address on the port of a wildcard listener.
 */
bool listener_is_self(const struct gateway *gw, const struct sockaddr_any *to);
/* Close every listener. */
void listeners_close(struct gateway *gw);

#endif
