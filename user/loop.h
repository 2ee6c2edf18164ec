/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The daemon's event loop: start-up, signals, reload, drain, timers, dispatch. */
#ifndef TUNNELGATE_LOOP_H
#define TUNNELGATE_LOOP_H

#include "config.h"

/* Run the daemon on @cfg (loaded from @path) until SIGTERM/SIGINT. Returns the exit code. */
int gateway_run(struct config *cfg, const char *path);

#endif
