/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Least privilege after start-up. When start() is done, everything that needs root
 * is done too: BPF programs loaded and attached, maps pinned, the cgroup joined,
 * listeners and the control socket bound. priv_drop() then gives up what the daemon
 * no longer needs: it switches to `user` with only the capabilities the relay still
 * uses, sets no_new_privs and installs the seccomp allow-list. What only root may
 * remove at exit (pins under /sys/fs/bpf, the cgroup child, a control socket in a
 * root-owned directory) is left to a helper process that keeps uid 0, no capability
 * but CAP_DAC_OVERRIDE for the cgroup, and sleeps until the daemon exits.
 */
#ifndef TUNNELGATE_PRIV_H
#define TUNNELGATE_PRIV_H

#include "config.h"
#include "gateway-t.h"

/*
 * Drop to @gw->cfg->user (root: stay root), keep the capabilities README.md lists and
 * set no_new_privs, before any worker thread starts (capabilities are per thread).
 * Started as a user other than root, the daemon keeps its uid. Returns 0, or -errno
 * after a one-line reason (unknown user, a failed set*id or capset): the daemon must
 * not go on with privileges it meant to drop.
 */
int priv_drop(struct gateway *gw);

/*
 * With seccomp = yes|log, install the allow-list on every thread (the workers are
 * running by then). Returns 0, or -errno after a one-line reason.
 */
int priv_confine(struct gateway *gw);

/*
 * At exit, before relay_close() and cgroup_leave(): the helper moves the daemon back
 * to its parent cgroup and removes the cgroup child, the pins, the pin dir and the
 * control socket; returns once it did. Nothing without a helper (user = root).
 */
void priv_exit(void);

/*
 * SIGHUP: 0 if @cfg needs no privilege the daemon dropped, else -EPERM after a log
 * line saying what and what to do (a new listen port below
 * net.ipv4.ip_unprivileged_port_start, a new bpf_pin_dir, a control socket in a
 * directory `user` cannot write).
 */
int priv_reload_check(const struct gateway *gw, const struct config *cfg);

#endif
