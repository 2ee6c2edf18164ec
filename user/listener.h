/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The listening sockets of `listen`, kept across reloads when their address stays. */
#ifndef TUNNELGATE_LISTENER_H
#define TUNNELGATE_LISTENER_H

#include "config.h"
#include "gateway-t.h"

/*
 * Make @gw's listeners match @cfg: keep sockets whose address did not change, open
 * the new ones, close the rest. Returns 0, or -EADDRNOTAVAIL with the old set kept.
 */
int listeners_sync(struct gateway *gw, const struct config *cfg);
/* Close every listener. */
void listeners_close(struct gateway *gw);

#endif
