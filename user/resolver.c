// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Host name look-ups with c-ares on the daemon's loop. c-ares asks for its sockets
 * to be polled through the socket-state callback; they go into the resolver's own
 * epoll instance, whose fd the loop polls like any other. The deadline of each
 * look-up is kept here rather than left to c-ares, whose retries double their
 * timeout per round over every server: a client is answered at resolver_timeout_ms
 * whatever c-ares still tries.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ev.h"
#include "log.h"
#include "resolver.h"

#define EVENT_BATCH 64
/* c-ares asks each server twice, the second time with twice the wait: timeout_ms / 3
 * per first try spends about resolver_timeout_ms on one server. */
#define ARES_TRIES 2

struct resolver_list {
	struct resolve_req *head, *tail;
};

/*
 * A look-up c-ares holds. c-ares calls back exactly once for it, so it outlives its
 * request when that one is cancelled or timed out; it still counts against
 * resolver_max_queries until then, as its sockets and memory are still in use.
 */
struct resolver_query {
	struct resolver *r;
	struct resolve_req *req;     /* NULL once the request left (cancelled, timed out) */
	struct resolver_query *next, *prev; /* on r->running while req is set */
};

struct resolver {
	ares_channel ch;
	int epfd;
	unsigned max_queries, timeout_ms;
	unsigned inflight;           /* queries c-ares holds, detached ones included */
	/* Queries with a request, oldest first: they start in arrival order, so this is
	 * also deadline order, as is the waiting list. */
	struct resolver_query *running, *running_tail;
	struct resolver_list waiting; /* beyond max_queries, in arrival order */
	struct resolver_list done;    /* answered, for resolver_done() */
};

/* ---- lists ---- */

static void list_add(struct resolver_list *l, struct resolve_req *req)
{
	req->next = NULL;
	req->prev = l->tail;
	if (l->tail)
		l->tail->next = req;
	else
		l->head = req;
	l->tail = req;
	req->list = l;
}

static void list_del(struct resolve_req *req)
{
	struct resolver_list *l = req->list;

	if (req->prev)
		req->prev->next = req->next;
	else
		l->head = req->next;
	if (req->next)
		req->next->prev = req->prev;
	else
		l->tail = req->prev;
	req->next = req->prev = NULL;
	req->list = NULL;
}

static struct resolve_req *list_pop(struct resolver_list *l)
{
	struct resolve_req *req = l->head;

	if (req)
		list_del(req);
	return req;
}

static void list_free(struct resolver_list *l)
{
	struct resolve_req *req;

	while ((req = list_pop(l)))
		free(req);
}

static void running_add(struct resolver *r, struct resolver_query *q)
{
	q->next = NULL;
	q->prev = r->running_tail;
	if (r->running_tail)
		r->running_tail->next = q;
	else
		r->running = q;
	r->running_tail = q;
}

/* Take @q's request away from it: c-ares' answer for it will be dropped. */
static struct resolve_req *detach(struct resolver *r, struct resolver_query *q)
{
	struct resolve_req *req = q->req;

	if (q->prev)
		q->prev->next = q->next;
	else
		r->running = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		r->running_tail = q->prev;
	q->next = q->prev = NULL;
	q->req = NULL;
	req->query = NULL;
	return req;
}

/* ---- c-ares callbacks ---- */

/* c-ares opens, changes or closes a socket: mirror it in our epoll instance. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct resolver *r = data;
	struct epoll_event ev = { .events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0),
				  .data.fd = fd };

	if (!ev.events) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) &&
	    (errno != ENOENT || epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev)))
		pr_warn("cannot poll a DNS socket: %s (look-ups on it will time out)", strerror(errno));
}

static int status_errno(int status)
{
	switch (status) {
	case ARES_ETIMEOUT:
		return -ETIMEDOUT;
	case ARES_SUCCESS: /* with no address */
	case ARES_ENOTFOUND:
	case ARES_ENODATA:
	case ARES_ENONAME:
	case ARES_EBADNAME:
		return -ENOENT;
	case ARES_ENOMEM:
		return -ENOMEM;
	default: /* ESERVFAIL, EREFUSED, ECONNREFUSED, EBADRESP, ... */
		return -EIO;
	}
}

/* The first address wins, as with getaddrinfo(): c-ares sorts them the same way. */
static int first_address(struct resolve_req *req, int status, const struct ares_addrinfo *res)
{
	const struct ares_addrinfo_node *n = res ? res->nodes : NULL;

	if (status != ARES_SUCCESS || !n || n->ai_addrlen > sizeof(req->addr.ss) ||
	    (n->ai_family != AF_INET && n->ai_family != AF_INET6)) {
		pr_debug("resolving %s: %s", req->host,
			 status == ARES_SUCCESS ? "no address" : ares_strerror(status));
		return status_errno(status);
	}
	memset(&req->addr, 0, sizeof(req->addr));
	memcpy(&req->addr.ss, n->ai_addr, n->ai_addrlen);
	req->addr.len = n->ai_addrlen;
	if (n->ai_family == AF_INET)
		req->addr.in.sin_port = htons(req->port);
	else
		req->addr.in6.sin6_port = htons(req->port);
	return 0;
}

static void answered(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct resolver_query *q = arg;
	struct resolver *r = q->r;

	(void)timeouts;
	r->inflight--;
	if (q->req) {
		struct resolve_req *req = detach(r, q);

		req->err = first_address(req, status, res);
		list_add(&r->done, req);
	}
	ares_freeaddrinfo(res);
	free(q);
}

/* ---- look-ups ---- */

static void start(struct resolver *r, struct resolve_req *req)
{
	struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct resolver_query *q = calloc(1, sizeof(*q));

	if (!q) {
		req->err = -ENOMEM;
		list_add(&r->done, req);
		return;
	}
	q->r = r;
	q->req = req;
	req->query = q;
	running_add(r, q);
	r->inflight++;
	/* May answer at once (/etc/hosts, a bad name): answered() runs before it returns. */
	ares_getaddrinfo(r->ch, req->host, NULL, &hints, answered, q);
}

static void start_waiting(struct resolver *r)
{
	struct resolve_req *req;

	while (r->inflight < r->max_queries && (req = list_pop(&r->waiting)))
		start(r, req);
}

static void timed_out(struct resolver *r, struct resolve_req *req, const char *where)
{
	pr_debug("resolving %s: no answer in %u ms (%s)", req->host, r->timeout_ms, where);
	req->err = -ETIMEDOUT;
	list_add(&r->done, req);
}

/* Answer the look-ups past their deadline; c-ares goes on with those it has, detached. */
static void expire(struct resolver *r)
{
	uint64_t now = now_ms();

	while (r->running && r->running->req->deadline_ms <= now)
		timed_out(r, detach(r, r->running), "in flight");
	while (r->waiting.head && r->waiting.head->deadline_ms <= now)
		timed_out(r, list_pop(&r->waiting), "waiting for one of resolver_max_queries");
}

static void process(struct resolver *r)
{
	struct epoll_event ev[EVENT_BATCH];
	int n = epoll_wait(r->epfd, ev, EVENT_BATCH, 0);

	for (int i = 0; i < n; i++) {
		uint32_t e = ev[i].events;
		int fd = ev[i].data.fd;

		/* A socket c-ares closed while handling an earlier one is ignored by it. */
		ares_process_fd(r->ch, e & (EPOLLIN | EPOLLERR | EPOLLHUP) ? fd : ARES_SOCKET_BAD,
				e & EPOLLOUT ? fd : ARES_SOCKET_BAD);
	}
	if (n <= 0)
		ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* its timers */
	expire(r);
	start_waiting(r);
}

/* ---- setup ---- */

static int open_channel(struct resolver *r, const struct config *cfg, char *why, size_t len)
{
	struct ares_options o = {
		.timeout = r->timeout_ms / 3 ? r->timeout_ms / 3 : 1,
		.tries = ARES_TRIES,
		.sock_state_cb = sock_state,
		.sock_state_cb_data = r,
	};
	char name[CFG_NAME_MAX];
	int st;

	st = ares_init_options(&r->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
				ARES_OPT_SOCK_STATE_CB);
	if (st != ARES_SUCCESS) {
		snprintf(why, len, "c-ares cannot start: %s (check /etc/resolv.conf, or set resolver = IP:port in [gateway])",
			 ares_strerror(st));
		return st == ARES_ENOMEM ? -ENOMEM : -EIO;
	}
	if (cfg->resolver.len) {
		/* "ip:port" and "[ip6]:port", as sockaddr_fmt() writes them, are c-ares' syntax. */
		st = ares_set_servers_ports_csv(r->ch, sockaddr_fmt(&cfg->resolver, name, sizeof(name)));
		if (st != ARES_SUCCESS) {
			snprintf(why, len, "c-ares cannot use resolver %s: %s", name, ares_strerror(st));
			ares_destroy(r->ch);
			return st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
		}
	}
	return 0;
}

struct resolver *resolver_start(const struct config *cfg, char *why, size_t len)
{
	struct resolver *r = calloc(1, sizeof(*r));
	int err;

	if (!r) {
		snprintf(why, len, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	r->max_queries = cfg->resolver_max_queries ? cfg->resolver_max_queries : 1;
	r->timeout_ms = cfg->resolver_timeout_ms;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0) {
		err = -errno;
		snprintf(why, len, "cannot create its epoll instance: %s (raise the fd limit: ulimit -n)",
			 strerror(errno));
		goto fail;
	}
	err = ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS ? 0 : -ENOMEM;
	if (err) {
		snprintf(why, len, "c-ares cannot start: out of memory");
		goto fail_epoll;
	}
	err = open_channel(r, cfg, why, len);
	if (err)
		goto fail_lib;
	return r;
fail_lib:
	ares_library_cleanup();
fail_epoll:
	close(r->epfd);
fail:
	free(r);
	errno = -err;
	return NULL;
}

void resolver_stop(struct resolver *r)
{
	if (!r)
		return;
	/* Calls answered() for every query left (ARES_EDESTRUCTION): they end up on done. */
	ares_destroy(r->ch);
	list_free(&r->waiting);
	list_free(&r->done);
	close(r->epfd);
	ares_library_cleanup();
	free(r);
}

int resolver_fd(const struct resolver *r)
{
	return r->epfd;
}

int resolver_timeout_ms(const struct resolver *r)
{
	struct timeval tv, *next;
	int64_t ms = -1;

	if (r->done.head)
		return 0;
	if (r->running || r->waiting.head) {
		uint64_t now = now_ms(), at = r->running ? r->running->req->deadline_ms : UINT64_MAX;

		if (r->waiting.head && r->waiting.head->deadline_ms < at)
			at = r->waiting.head->deadline_ms;
		ms = at > now ? (int64_t)(at - now) : 0;
	}
	next = ares_timeout(r->ch, NULL, &tv);
	if (next) {
		/* Rounded up: a wait of 0 before c-ares is due would spin. */
		int64_t due = (int64_t)next->tv_sec * 1000 + (next->tv_usec + 999) / 1000;

		if (ms < 0 || due < ms)
			ms = due;
	}
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

void resolver_submit(struct resolver *r, struct resolve_req *req)
{
	req->err = 0;
	req->query = NULL;
	req->deadline_ms = now_ms() + r->timeout_ms;
	list_add(&r->waiting, req);
	start_waiting(r);
}

void resolver_cancel(struct resolver *r, struct resolve_req *req)
{
	if (req->query)
		detach(r, req->query);
	else if (req->list)
		list_del(req);
	free(req);
}

struct resolve_req *resolver_done(struct resolver *r)
{
	if (!r->done.head)
		process(r);
	return list_pop(&r->done);
}
