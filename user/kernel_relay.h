/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel relay's userspace half: the hand-off into the sockhash, the FIN
 * hand-over, held bytes, pause and resume, and the reset drain. relay.c loads the
 * programs and owns the maps; this file drives one tunnel through them. Every
 * function reports what the tunnel needs next as an enum relay_step.
 */
#ifndef TUNNELGATE_KERNEL_RELAY_H
#define TUNNELGATE_KERNEL_RELAY_H

#include <stdint.h>

#include "config.h"
#include "tunnel-t.h"

/*
 * Hand @t's two sockets to the kernel. @client is the client's address, @crecvd and
 * @urecvd the bytes the daemon read from the client and upstream sockets. Returns 0,
 * or -errno with nothing in the maps (the caller relays with splice instead).
 */
int kernel_relay_start(struct tunnel *t, const struct sockaddr_any *client, uint64_t crecvd,
		       uint64_t urecvd);
/* The source socket of direction @d reported @events. */
enum relay_step kernel_relay_event(struct tunnel *t, int d, uint32_t events);
/* Look again at held bytes, pauses and FIN hand-overs (polling). */
enum relay_step kernel_relay_check(struct tunnel *t);
/*
 * The source of direction @d was reset: copy what it still had queued after the
 * bytes the kernel redirected. 1 when all of it is in the destination, 0 while some
 * is not, -1 if the destination failed too.
 */
int kernel_relay_drain_reset(struct tunnel *t, int d);
/* Read the tunnel's counters from its map entry into @n. Returns 0 or -ENOENT. */
int kernel_relay_counters(const struct tunnel *t, struct tunnel_counts *n);
/* Take the tunnel out of the maps and free its held-bytes buffers. */
void kernel_relay_stop(struct tunnel *t);

#endif
