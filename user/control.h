/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The control socket that answers tunnelctl (list, stats, pools, kill). */
#ifndef TUNNELGATE_CONTROL_H
#define TUNNELGATE_CONTROL_H

#include <stdint.h>

#include "ev.h"
#include "gateway-t.h"

/* Listen on the unix socket @path (mode 0600, parent dirs created). Returns 0 or -errno. */
int control_open(struct gateway *gw, const char *path);
/*
 * Move the control socket to @path (reload): the new one opens first, and if it
 * cannot, the old one stays. Returns 0 or -errno.
 */
int control_reopen(struct gateway *gw, const char *path);
/* Close the listener, every client of it, and remove the socket file. */
void control_close(struct gateway *gw);
/* An epoll event on the listener or on a client of it. */
void control_event(struct gateway *gw, struct handle *h, uint32_t events);

#endif
