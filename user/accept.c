// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Accepting clients on a worker's listeners, within max_connections (counted over
 * every worker) and max_connections_per_client.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept.h"
#include "admit.h"
#include "conn.h"
#include "log.h"
#include "stream.h"

#define ACCEPT_BATCH 64
#define ACCEPT_LOG_MS 10000 /* at most one "not accepting" line per this */
#define ACCEPT_RETRY_MS 1000 /* out of fds with no connection closed: try again after this */

/* One "not accepting" line per ACCEPT_LOG_MS for all the workers, which pause together. */
static bool log_due(uint64_t now)
{
	static uint64_t last_ms; /* every worker's */
	uint64_t last = __atomic_load_n(&last_ms, __ATOMIC_RELAXED);

	if (last && now - last < ACCEPT_LOG_MS)
		return false;
	return __atomic_compare_exchange_n(&last_ms, &last, now, false, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
}

/*
 * Stop accepting until a connection slot frees; new clients wait in the backlog.
 * @out_of_fds: the descriptors ran out, rather than max_connections.
 */
static void accept_pause(struct gateway *gw, const char *why, bool out_of_fds)
{
	uint64_t now = now_ms();

	for (struct listener *l = gw->listeners; l; l = l->next)
		ev_set(&l->h, 0);
	gw->accept_paused = true;
	gw->paused_fds = out_of_fds;
	gw->paused_conns = gw->nconns;
	gw->paused_ms = now;
	gw->stats.accept_pauses++;
	if (log_due(now)) {
		pr_warn("not accepting connections for now: %s (%u open); raise it, or the fd limit (ulimit -n)",
			why, gw->nconns);
	}
}

/* Accept again once below max_connections and, after running out of fds, once one freed. */
void accept_resume(struct gateway *gw)
{
	if (gw->ctl_paused && now_ms() - gw->ctl_paused_ms >= ACCEPT_RETRY_MS && gw->ctl.fd >= 0) {
		gw->ctl_paused = false;
		ev_set(&gw->ctl, EPOLLIN);
	}
	if (!gw->accept_paused || gw->stopping ||
	    __atomic_load_n(gw->conns_total, __ATOMIC_RELAXED) >= gw->max_conns)
		return;
	/* Out of fds: once one of ours closed, or after a while (another process's may). */
	if (gw->paused_fds && gw->nconns >= gw->paused_conns &&
	    now_ms() - gw->paused_ms < ACCEPT_RETRY_MS)
		return;
	gw->accept_paused = false;
	for (struct listener *l = gw->listeners; l; l = l->next)
		ev_set(&l->h, EPOLLIN);
}

/* Over max_connections_per_client: a short 503, then close (best effort, never blocks). */
static void refuse_client(struct gateway *gw, int fd)
{
	static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
				  "Content-Length: 64\r\n\r\n"
				  "tunnelgate: too many connections from your address; retry later\n";

	gw->stats.refused_per_client++;
	if (send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		pr_debug("refusing a client: %s", strerror(errno));
	close(fd);
}

/*
 * One of max_connections for a connection about to be accepted, counted before the
 * accept so that two workers cannot both take the last one; conn_close() gives it
 * back, or unreserve() when no connection came of it.
 */
static bool reserve(struct gateway *gw)
{
	unsigned n = __atomic_load_n(gw->conns_total, __ATOMIC_RELAXED);

	do {
		if (n >= gw->max_conns)
			return false;
	} while (!__atomic_compare_exchange_n(gw->conns_total, &n, n + 1, false,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return true;
}

static void unreserve(struct gateway *gw)
{
	__atomic_sub_fetch(gw->conns_total, 1, __ATOMIC_RELAXED);
}

void accept_ready(struct gateway *gw, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_any a = { .len = sizeof(a.ss) };
		unsigned per_client = gw->cfg->max_connections_per_client;
		struct conn *c;
		int fd;

		if (!reserve(gw)) {
			accept_pause(gw, "max_connections reached", false);
			return;
		}
		fd = accept4(l->h.fd, &a.sa, &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			unreserve(gw);
			if (errno == EMFILE || errno == ENFILE)
				accept_pause(gw, strerror(errno), true);
			return;
		}
		if (per_client && admit_count(gw->admit, &a) >= per_client) {
			unreserve(gw);
			refuse_client(gw, fd);
			continue;
		}
		c = conn_new(gw, fd, &a); /* it owns the slot from here on */
		if (!c) {
			unreserve(gw);
			pr_warn("cannot accept: out of memory");
			close(fd);
			return;
		}
		gw->stats.accepted++;
		c->want_proxy = l->accept_proxy;
		stream_start(c);
	}
}
