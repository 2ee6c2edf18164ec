/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel tunnel relay: the BPF verdict program, its maps and their pins.
 * See bpf/relay.bpf.c for how the maps work together.
 */
#ifndef TUNNELGATE_RELAY_H
#define TUNNELGATE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay_shared.h"

struct relay;

/*
 * Load and attach the verdict program and pin its maps under @pin_dir (created, and
 * bpffs mounted on /sys/fs/bpf when it is not). Returns NULL with errno set and a
 * one-line reason in @why on failure.
 */
struct relay *relay_open(const char *pin_dir, char *why, size_t whylen);

/* Detach, unpin, remove the pin dir, free. Safe on NULL. */
void relay_close(struct relay *r);

/*
 * Hand the connected sockets @cfd (client) and @ufd (upstream) of tunnel @t->id to the
 * kernel: @t is the initial map value (addresses, start time, bytes the daemon already
 * forwarded). Bytes already in either receive queue are relayed at once. Returns 0,
 * or -errno with nothing left in the maps (the caller can relay in userspace instead).
 */
int relay_add(struct relay *r, const struct tg_tunnel *t, int cfd, int ufd);

/* Take tunnel @id and its sockets out of the maps. Idempotent. */
void relay_remove(struct relay *r, uint64_t id, int cfd, int ufd);

/* Read tunnel @id's map value into @t. Returns 0 or -ENOENT. */
int relay_read(struct relay *r, uint64_t id, struct tg_tunnel *t);

/* Read the flow control state of relay socket @fd. Returns 0 or -errno. */
int relay_read_end(struct relay *r, int fd, struct tg_end *e);

/* Bound each direction's backlog to @bytes (max_backlog_bytes); applies at once. */
void relay_set_max_backlog(struct relay *r, uint64_t bytes);

/*
 * Stop relaying the bytes that arrive on @fd: they stay in its receive queue and TCP
 * flow control slows its sender. The socket stays a redirect target for its peer.
 */
int relay_pause(struct relay *r, int fd);

/*
 * Relay @fd's bytes again, the queued ones at once. -EOPNOTSUPP if the socket is no
 * longer established (its FIN arrived while paused): the sockhash refuses it then.
 */
int relay_resume(struct relay *r, int fd);

/* The ring buffer's fd, readable when pause requests wait. */
int relay_events_fd(struct relay *r);

/* Hand each waiting pause request to @cb. */
void relay_events_consume(struct relay *r, void (*cb)(void *ctx, const struct tg_event *ev),
			  void *ctx);

#endif
