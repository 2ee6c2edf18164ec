/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Accepting clients on a worker's listeners. */
#ifndef TUNNELGATE_ACCEPT_H
#define TUNNELGATE_ACCEPT_H

#include "gateway-t.h"

/*
 * @l is readable: accept a batch. At max_connections (all workers' connections) or
 * out of fds the worker's listeners stop being polled; new clients wait in the
 * kernel's backlog (or go to another worker of the SO_REUSEPORT group).
 */
void accept_ready(struct gateway *gw, struct listener *l);

/*
 * After each event batch: poll the listeners again once below max_connections and,
 * after running out of fds, once a descriptor was freed; re-arm a paused control socket.
 */
void accept_resume(struct gateway *gw);

#endif
