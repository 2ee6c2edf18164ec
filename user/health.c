// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Active health checks: one probe per server of the current config, polled with ev. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "ev.h"
#include "gateway-t.h"
#include "health.h"
#include "log.h"
#include "pool.h"

#define NO_TIME UINT64_MAX
#define SOCKET_LOG_MS 10000 /* at most one "cannot create a check socket" line per this */

enum probe_phase { P_IDLE, P_CONNECTING, P_SENDING, P_READING };

/*
 * The checks of one server. Keyed by its server_state, which every config that has the
 * server shares: a reload that keeps the server keeps its probe, schedule and all.
 */
struct probe {
	struct handle h;         /* H_HEALTH, fd -1 while idle; owner: this probe */
	struct server_state *st;
	struct pool *p;          /* in health.cfg; NULL while a reload sorts them */
	struct server *s;
	enum probe_phase phase;
	bool http;               /* the probe in flight sends a CONNECT */
	uint64_t next_ms;        /* the next probe starts then */
	uint64_t deadline_ms;    /* the one in flight gives up then */
	uint64_t start_us;
	size_t sent;             /* of the CONNECT request */
	size_t rlen;
	char rbuf[16];           /* the answer's first bytes: all health_parse_status() needs */
	struct probe *next;
};

struct health {
	/* The config the probes' p and s point into, held so that they stay valid. */
	struct config *cfg;
	struct probe *probes;
	uint64_t next_ms;        /* the earliest next_ms or deadline_ms of the probes */
	uint64_t socket_log_ms;
	bool stopping;           /* gw->stopping at the last tick */
};

struct health *health_new(void)
{
	return calloc(1, sizeof(struct health));
}

static void probe_close(struct probe *pr)
{
	ev_forget(&pr->h);
	pr->phase = P_IDLE;
}

void health_free(struct health *hc)
{
	struct probe *pr, *next;

	if (!hc)
		return;
	for (pr = hc->probes; pr; pr = next) {
		next = pr->next;
		probe_close(pr);
		free(pr);
	}
	config_put(hc->cfg);
	free(hc);
}

/* FNV-1a over the pool name and address: where in the interval a server's checks fall. */
static uint64_t spread(const struct server_state *st)
{
	const unsigned char *b = (const unsigned char *)&st->addr.ss;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *c = st->pool; *c; c++)
		h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
	for (socklen_t i = 0; i < st->addr.len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static struct probe *probe_find(struct health *hc, const struct server_state *st)
{
	for (struct probe *pr = hc->probes; pr; pr = pr->next)
		if (pr->st == st)
			return pr;
	return NULL;
}

/* A new server: its first check some way into the interval, so a pool does not fire at once. */
static struct probe *probe_add(struct health *hc, struct pool *p, struct server *s, uint64_t now)
{
	struct probe *pr = calloc(1, sizeof(*pr));

	if (!pr) {
		pr_warn("pool %s server %s: out of memory, not checking it", p->name, s->name);
		return NULL;
	}
	pr->h = (struct handle){ .kind = H_HEALTH, .fd = -1, .owner = pr };
	pr->st = s->state;
	pr->next_ms = now + (p->check_interval_ms ? spread(s->state) % p->check_interval_ms : 0);
	pr->next = hc->probes;
	hc->probes = pr;
	return pr;
}

/* gw->cfg replaced hc->cfg: point the probes into it, add its new servers, drop the gone. */
static void sync_cfg(struct health *hc, struct config *cfg)
{
	uint64_t now = now_ms();
	struct probe **pp, *pr;

	for (pr = hc->probes; pr; pr = pr->next)
		pr->p = NULL;
	for (unsigned i = 0; i < cfg->npools; i++) {
		struct pool *p = &cfg->pools[i];

		for (unsigned j = 0; !p->direct && j < p->nservers; j++) {
			pr = probe_find(hc, p->servers[j].state);
			if (!pr)
				pr = probe_add(hc, p, &p->servers[j], now);
			if (pr && !pr->p) {
				pr->p = p;
				pr->s = &p->servers[j];
				/* A shorter check_interval_ms applies from now, not after the old one. */
				if (pr->next_ms > now + p->check_interval_ms)
					pr->next_ms = now + p->check_interval_ms;
			}
		}
	}
	for (pp = &hc->probes; (pr = *pp);) {
		if (pr->p) {
			pp = &pr->next;
			continue;
		}
		*pp = pr->next;
		probe_close(pr);
		free(pr);
	}
	config_get(cfg);
	config_put(hc->cfg);
	hc->cfg = cfg;
	hc->next_ms = 0;
}

/*
 * The probe in flight ended: tell the pool, close. @what is the failure, or for an ok
 * a note put before the time it took ("" gives "ok 0.4ms", "407 " "ok 407 0.4ms").
 */
static void probe_done(struct health *hc, struct probe *pr, bool ok, const char *what)
{
	char okbuf[32];

	probe_close(pr);
	if (ok) {
		snprintf(okbuf, sizeof(okbuf), "ok %s%.1fms", what, (now_us() - pr->start_us) / 1000.0);
		what = okbuf;
		pool_server_ok(pr->p, pr->s, what);
	} else {
		pool_server_failed(pr->p, pr->s, what);
	}
	pr_debug("check of pool %s server %s: %s", pr->p->name, pr->s->name, what);
	if (pr->next_ms < hc->next_ms)
		hc->next_ms = pr->next_ms;
}

/* The answer's first bytes decide: a 2xx or a 407 (the proxy is there, it wants a login). */
static void read_status(struct health *hc, struct probe *pr)
{
	char what[32];
	ssize_t n;
	int status;

	n = recv(pr->h.fd, pr->rbuf + pr->rlen, sizeof(pr->rbuf) - pr->rlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		probe_done(hc, pr, false, n ? pool_failure_name(errno) : "reset");
		return;
	}
	pr->rlen += n;
	status = health_parse_status(pr->rbuf, pr->rlen);
	if (!status)
		return;
	if (status < 0) {
		probe_done(hc, pr, false, "bad answer");
		return;
	}
	snprintf(what, sizeof(what), "status %d", status);
	if (status == 407) /* the proxy is up; check_target wants a login */
		probe_done(hc, pr, true, "407 ");
	else if (status >= 200 && status < 300)
		probe_done(hc, pr, true, "");
	else
		probe_done(hc, pr, false, what);
}

/* Send the CONNECT (a few hundred bytes: one send, bar a full socket buffer). */
static void send_request(struct health *hc, struct probe *pr)
{
	const char *t = pr->p->check_target;
	char req[sizeof(pr->p->check_target) * 2 + 64];
	int len = snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", t, t);
	ssize_t n;

	n = send(pr->h.fd, req + pr->sent, len - pr->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		probe_done(hc, pr, false, pool_failure_name(errno));
		return;
	}
	pr->sent += n;
	if (pr->sent < (size_t)len)
		return;
	pr->phase = P_READING;
	if (ev_set(&pr->h, EPOLLIN))
		probe_close(pr); /* not the server's fault; ev_set() said why */
}

/* The connect finished, one way or the other. */
static void connect_done(struct health *hc, struct probe *pr)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(pr->h.fd, SOL_SOCKET, SO_ERROR, &err, &len))
		err = errno;
	if (err) {
		probe_done(hc, pr, false, pool_failure_name(err));
		return;
	}
	/* A reload may have made it check = connect while this one dialled. */
	if (!pr->http || pr->p->check != CHECK_HTTP_CONNECT) {
		probe_done(hc, pr, true, "");
		return;
	}
	pr->phase = P_SENDING;
	send_request(hc, pr);
}

/* Why a probe could not start, at most every SOCKET_LOG_MS; the server is not blamed. */
static void socket_failed(struct health *hc, struct probe *pr, uint64_t now)
{
	if (hc->socket_log_ms && now - hc->socket_log_ms < SOCKET_LOG_MS)
		return;
	hc->socket_log_ms = now;
	pr_warn("cannot create a socket to check pool %s server %s: %s; skipping checks until one can be made (raise the fd limit, ulimit -n)",
		pr->p->name, pr->s->name, strerror(errno));
}

static void probe_start(struct health *hc, struct probe *pr, uint64_t now)
{
	const struct pool *p = pr->p;
	int fd;

	pr->next_ms = now + p->check_interval_ms;
	if (p->check == CHECK_NONE && !pr->st->down)
		return;
	fd = socket(pr->s->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		socket_failed(hc, pr, now);
		return;
	}
	pr->h.fd = fd;
	pr->http = p->check == CHECK_HTTP_CONNECT;
	pr->phase = P_CONNECTING;
	pr->deadline_ms = now + p->check_timeout_ms;
	pr->start_us = now_us();
	pr->sent = pr->rlen = 0;
	if (!connect(fd, &pr->s->addr.sa, pr->s->addr.len)) {
		connect_done(hc, pr);
		return;
	}
	if (errno != EINPROGRESS) {
		probe_done(hc, pr, false, pool_failure_name(errno));
		return;
	}
	if (ev_set(&pr->h, EPOLLOUT))
		probe_close(pr); /* not the server's fault; ev_set() said why */
}

void health_tick(struct gateway *gw)
{
	struct health *hc = gw->health;
	uint64_t now;

	if (!hc)
		return;
	if (gw->cfg != hc->cfg)
		sync_cfg(hc, gw->cfg);
	if (gw->stopping != hc->stopping) /* no more checks: only those in flight count */
		hc->next_ms = 0;
	hc->stopping = gw->stopping;
	now = now_ms();
	if (now < hc->next_ms)
		return;
	hc->next_ms = NO_TIME;
	for (struct probe *pr = hc->probes; pr; pr = pr->next) {
		if (pr->phase != P_IDLE && now >= pr->deadline_ms)
			probe_done(hc, pr, false, "timeout");
		if (pr->phase == P_IDLE && !gw->stopping && now >= pr->next_ms)
			probe_start(hc, pr, now);
		if (pr->phase != P_IDLE && pr->deadline_ms < hc->next_ms)
			hc->next_ms = pr->deadline_ms;
		else if (pr->phase == P_IDLE && !gw->stopping && pr->next_ms < hc->next_ms)
			hc->next_ms = pr->next_ms;
	}
}

int health_next_ms(const struct gateway *gw)
{
	const struct health *hc = gw->health;
	uint64_t now;

	if (!hc || hc->next_ms == NO_TIME)
		return -1;
	now = now_ms();
	if (hc->next_ms <= now)
		return 0;
	return hc->next_ms - now > 3600000 ? 3600000 : (int)(hc->next_ms - now);
}

void health_event(struct gateway *gw, struct handle *h, uint32_t events)
{
	struct probe *pr = h->owner;

	(void)events; /* errors and hang-ups show in SO_ERROR, send() and recv() */
	switch (pr->phase) {
	case P_CONNECTING:
		connect_done(gw->health, pr);
		break;
	case P_SENDING:
		send_request(gw->health, pr);
		break;
	case P_READING:
		read_status(gw->health, pr);
		break;
	case P_IDLE:
		break;
	}
}

int health_parse_status(const char *buf, size_t len)
{
	static const char pattern[] = "HTTP/1.D DDD";

	for (size_t i = 0; i < len && i < sizeof(pattern) - 1; i++) {
		bool ok = pattern[i] == 'D' ? isdigit((unsigned char)buf[i]) : buf[i] == pattern[i];

		if (!ok)
			return -EBADMSG;
	}
	if (len < sizeof(pattern))
		return 0;
	if (buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
		return -EBADMSG;
	return (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
}
