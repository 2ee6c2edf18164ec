/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The splice relay: each direction moves through a pipe with splice(), so the bytes
 * never enter the daemon's memory. Used when the kernel relay is off or refuses a
 * tunnel. Every function reports what the tunnel needs next as an enum relay_step.
 */
#ifndef TUNNELGATE_SPLICE_RELAY_H
#define TUNNELGATE_SPLICE_RELAY_H

#include "tunnel-t.h"

/* Create the pipes. Returns 0 or -errno. */
int splice_relay_start(struct tunnel *t);
/* Either socket turned ready: move what can be moved both ways. */
enum relay_step splice_relay_event(struct tunnel *t);
/*
 * The source of direction @d was reset: what it still had queued, then the pipe.
 * 1 when all of it is in the destination, 0 while some is not, -1 if the destination
 * failed too.
 */
int splice_relay_drain_reset(struct tunnel *t, int d);
/* Close the pipes. */
void splice_relay_stop(struct tunnel *t);

#endif
