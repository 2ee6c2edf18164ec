/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The daemon's own cgroup v2 child, where the relay's sockops program is attached:
 * sockops runs for the sockets of a cgroup's processes, so the daemon moves itself
 * into a child of its cgroup before it opens any socket.
 */
#ifndef TUNNELGATE_CGROUP_H
#define TUNNELGATE_CGROUP_H

#include <stddef.h>

struct tg_cgroup;

/*
 * Create the child cgroup "tunnelgated-@tag" ('/' in @tag become '-') under the
 * calling process's cgroup v2 path and move the process into it. Returns NULL with
 * errno set and a one-line reason in @why (no cgroup2 mount, no permission, ...).
 */
struct tg_cgroup *cgroup_enter(const char *tag, char *why, size_t whylen);

/* An O_RDONLY fd of the child cgroup's directory, for attaching programs. */
int cgroup_fd(const struct tg_cgroup *cg);

/*
 * Move the process back to the parent and remove the child; nothing if the child is
 * gone already (priv.c's helper removes it when the daemon runs as `user`). Safe on NULL.
 */
void cgroup_leave(struct tg_cgroup *cg);

#endif
