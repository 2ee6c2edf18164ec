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
 * bpffs mounted on /sys/fs/bpf when it is not). With @cgroup_fd >= 0, also attach the
 * sockops program that pauses lagging sockets (pause = sockops) to that cgroup; when
 * that fails the relay holds bytes instead (pause = hold) and @pause_why (@whylen
 * bytes) says why. Returns NULL with errno set and a one-line reason in @why on failure.
 */
struct relay *relay_open(const char *pin_dir, int cgroup_fd, char *pause_why, char *why,
			 size_t whylen);

/* True if lagging directions are paused by the sockops program (pause = sockops). */
bool relay_pausing(const struct relay *r);

/*
 * Pause mode only: SO_SNDBUF and SO_RCVBUF values (bytes as setsockopt takes them; the
 * kernel doubles them) forced on every relay socket from the next relay_add() on.
 * 0 leaves a buffer as it is.
 */
void relay_set_bufs(struct relay *r, int sndbuf, int rcvbuf);

/*
 * Put the relay socket @fd (cookie @cookie), paused by the sockops program, back under
 * the verdict program; bytes that waited in its receive queue are relayed at once.
 * Returns 0, or -errno: -EOPNOTSUPP once the socket is no longer established (its FIN
 * came while paused: the daemon reads the rest itself).
 */
int relay_resume(struct relay *r, uint64_t cookie, int fd);

/* Detach, unpin, remove the pin dir, free. Safe on NULL. */
void relay_close(struct relay *r);

/*
 * Remove the pins and the pin dir only (missing ones are fine; relay_close() does it
 * too): for priv.c's clean-up helper, which keeps root's access to them. Safe on NULL.
 */
void relay_unpin(struct relay *r);

/*
 * From now on relay_close() leaves the pins and the pin dir to another process that
 * calls relay_unpin() (priv.c's helper: as `user` the daemon cannot). Safe on NULL.
 */
void relay_leave_pins(struct relay *r);

/*
 * Hand the connected sockets @cfd (client) and @ufd (upstream) of tunnel @t->id to the
 * kernel: @t is the initial map value (addresses, start time, bytes the daemon already
 * forwarded). Bytes already in either receive queue are relayed at once. Stores the
 * sockets' cookies (the maps' keys) in @cookies. Returns 0, or -errno with nothing
 * left in the maps (the caller can relay in userspace instead); @t then holds the byte
 * counts as the kernel left them, for bytes one side relayed before the other failed.
 */
int relay_add(struct relay *r, struct tg_tunnel *t, int cfd, int ufd, uint64_t cookies[2]);

/*
 * Take tunnel @id and its sockets (by the @cookies relay_add() returned) out of the
 * maps, but for their `released` entries (relay_release_clear()). @closing: the caller
 * closes both sockets next, which takes them out of the sockhashes by itself.
 * Idempotent.
 */
void relay_remove(struct relay *r, uint64_t id, const uint64_t cookies[2], bool closing);

/* Read tunnel @id's map value into @t. Returns 0 or -ENOENT. */
int relay_read(struct relay *r, uint64_t id, struct tg_tunnel *t);

/* Read the flow control state of the relay socket of @cookie. Returns 0 or -errno. */
int relay_read_end(struct relay *r, uint64_t cookie, struct tg_end *e);

/* Bound each direction's backlog to @bytes (max_backlog_bytes; 0 = unbounded). */
void relay_set_max_backlog(struct relay *r, uint64_t bytes);

/*
 * The daemon has read @total held bytes (in all) from the relay socket of @cookie and written
 * them to its peer: once that matches the held count, the kernel relays again.
 */
int relay_release(struct relay *r, uint64_t cookie, uint64_t total);

/*
 * The daemon copied @bytes of direction @dir of tunnel @id itself: add them to the
 * tunnel's totals and copied counters. Returns 0 or -errno.
 */
int relay_count_copy(struct relay *r, uint64_t id, int dir, uint64_t bytes);

/* Delete the `released` entry relay_release() made for @cookie. */
void relay_release_clear(struct relay *r, uint64_t cookie);

#endif
