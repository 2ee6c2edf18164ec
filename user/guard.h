/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The XDP listener guard's userspace half: loads bpf/guard.bpf.c, attaches it to the
 * interfaces of xdp_interfaces, and keeps its maps: the listen ports, the deny list
 * (the config's entries and tunnelctl's) and the SYN rate. Its maps and links are
 * pinned in bpf_pin_dir beside the relay's. A library: it calls nothing above it.
 */
#ifndef TUNNELGATE_GUARD_H
#define TUNNELGATE_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "guard_shared.h"

struct guard;

/* Where a deny entry came from (bits of struct guard_deny's origin). */
enum guard_origin { GO_CONFIG = GUARD_DENY_CONFIG, GO_CTL = GUARD_DENY_CTL };

/*
 * With cfg->xdp_interfaces: load the program, fill its maps from @cfg, pin them and
 * attach it to every interface (native mode, else generic with one log line). An
 * interface whose XDP link is pinned in our pin dir by a daemon that is gone is taken
 * over; one held by anybody else is an error. Returns 0 with *@out NULL when no
 * interface is configured, or -errno with the reason in @why.
 */
int guard_open(const struct config *cfg, struct guard **out, char *why, size_t len);

/*
 * SIGHUP: the new listen ports, the config's deny entries in place of the old ones
 * (tunnelctl's stay), the new rate. xdp_interfaces changes need a restart (logged).
 */
void guard_reload(struct guard *g, const struct config *cfg);

/* Deny @c (origin @o added to the entry's). Returns 0 or -errno. */
int guard_deny_add(struct guard *g, const struct cidr *c, enum guard_origin o);
/* Take the origins @o off @c's entry; it goes when none is left. -ENOENT: none of @o. */
int guard_deny_del(struct guard *g, const struct cidr *c, enum guard_origin o);
/* Call @fn for every deny entry. */
void guard_deny_each(struct guard *g, void (*fn)(void *arg, const struct cidr *c, unsigned origin),
		     void *arg);

/* The counters of every CPU added up. */
void guard_counters(struct guard *g, struct guard_stats *out);

/* "10.0.0.0/8" or "2001:db8::/32" for @c into @out. */
const char *guard_cidr_fmt(const struct cidr *c, char *out, size_t len);

/* Unpin the maps and links (the clean-up helper does it when the daemon cannot). */
void guard_unpin(struct guard *g);
/* guard_close() leaves the pins: the clean-up helper removes them, as root. */
void guard_leave_pins(struct guard *g);
/* Detach from every interface, unpin (unless left to the helper) and free. Safe on NULL. */
void guard_close(struct guard *g);

#endif
