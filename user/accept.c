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

/* Stop accepting until a connection slot frees; new clients wait in the backlog. */
static void accept_pause(struct gateway *gw, const char *why)
{
	uint64_t now = now_ms();

	for (struct listener *l = gw->listeners; l; l = l->next)
		ev_set(&l->h, 0);
	gw->accept_paused = true;
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
	if (gw->nconns >= gw->paused_conns && now_ms() - gw->paused_ms < ACCEPT_RETRY_MS)
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

void accept_ready(struct gateway *gw, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_any a = { .len = sizeof(a.ss) };
		unsigned per_client = gw->cfg->max_connections_per_client;
		struct conn *c;
		int fd;

		if (__atomic_load_n(gw->conns_total, __ATOMIC_RELAXED) >= gw->max_conns) {
			accept_pause(gw, "max_connections reached");
			return;
		}
		fd = accept4(l->h.fd, &a.sa, &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				accept_pause(gw, strerror(errno));
			return;
		}
		if (per_client && admit_count(gw->admit, &a) >= per_client) {
			refuse_client(gw, fd);
			continue;
		}
		c = conn_new(gw, fd, &a);
		if (!c) {
			pr_warn("cannot accept: out of memory");
			close(fd);
			return;
		}
		gw->stats.accepted++;
		c->want_proxy = l->accept_proxy;
		stream_start(c);
	}
}
