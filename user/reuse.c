// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Idle upstream connections kept for plain HTTP keep-alive. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "gateway-t.h"
#include "http.h"
#include "log.h"
#include "reuse.h"

/*
 * One parked connection. The store is a single list, newest first: taking scans from
 * the head (LIFO), the bound evicts from the tail. upstream_idle_max is small (64 by
 * default), so a linear scan costs less than keeping a hash in step.
 */
struct idle {
	struct handle h;         /* kind H_IDLE, owner: this entry */
	struct reuse *store;
	char pool[CFG_NAME_MAX];
	struct sockaddr_any addr;
	const void *owner;       /* NULL: shareable */
	uint64_t deadline_ms;
	struct idle *prev, *next;
};

struct reuse {
	struct idle *head, *tail;
	unsigned n;
	unsigned nprivate;       /* of them, private to a client: conn_close() skips the scan at 0 */
	/*
	 * Entries closed or taken, freed by reuse_bury() after the event batch: an event
	 * for one may still be waiting in it (its fd is -1 by then).
	 */
	struct idle *dead;
};

struct reuse *reuse_new(void)
{
	return calloc(1, sizeof(struct reuse));
}

static void unlink_idle(struct reuse *r, struct idle *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		r->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		r->tail = e->prev;
	r->n--;
	r->nprivate -= e->owner != NULL;
}

/* Out of the store (its fd closed or handed out), freed by reuse_bury(). */
static void bury(struct reuse *r, struct idle *e)
{
	unlink_idle(r, e);
	e->next = r->dead;
	r->dead = e;
}

/* Close a parked connection. */
static void drop(struct reuse *r, struct idle *e)
{
	ev_forget(&e->h);
	bury(r, e);
}

void reuse_bury(struct reuse *r)
{
	struct idle *e;

	while (r && (e = r->dead)) {
		r->dead = e->next;
		free(e);
	}
}

void reuse_free(struct reuse *r)
{
	if (!r)
		return;
	while (r->head)
		drop(r, r->head);
	reuse_bury(r);
	free(r);
}

static bool same_addr(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return a->in6.sin6_port == b->in6.sin6_port &&
		       !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) &&
		       a->in6.sin6_scope_id == b->in6.sin6_scope_id;
	return false;
}

int reuse_put(struct reuse *r, int fd, const char *pool, const struct sockaddr_any *addr,
	      const void *owner, unsigned max, unsigned timeout_ms)
{
	struct idle *e;
	int err;

	while (r->n && r->n >= max)
		drop(r, r->tail);
	e = max ? calloc(1, sizeof(*e)) : NULL;
	if (!e) {
		close(fd);
		return max ? -ENOMEM : 0;
	}
	e->h = (struct handle){ .kind = H_IDLE, .fd = fd, .owner = e };
	e->store = r;
	snprintf(e->pool, sizeof(e->pool), "%s", pool);
	e->addr = *addr;
	e->owner = owner;
	e->deadline_ms = now_ms() + timeout_ms;
	e->next = r->head;
	if (r->head)
		r->head->prev = e;
	else
		r->tail = e;
	r->head = e;
	r->n++;
	r->nprivate += owner != NULL;
	/* RDHUP: a peer's FIN alone must close it, not only a reset or stray bytes. */
	err = ev_set(&e->h, EPOLLIN | EPOLLRDHUP);
	if (err)
		drop(r, e);
	return err;
}

/*
 * True if the peer has not closed the idle connection and sent nothing: epoll may
 * not have said so yet, when the FIN came in the same round.
 */
static bool still_idle(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static bool matches(const struct idle *e, const char *pool, const struct sockaddr_any *addr,
		    const void *owner)
{
	return e->owner == owner && same_addr(&e->addr, addr) && !strcmp(e->pool, pool);
}

/* The newest connection for the key with exactly @owner; dead ones met are closed. */
static int take_exact(struct reuse *r, const char *pool, const struct sockaddr_any *addr,
		      const void *owner)
{
	struct idle *e, *next;
	int fd;

	for (e = r->head; e; e = next) {
		next = e->next;
		if (!matches(e, pool, addr, owner))
			continue;
		if (!still_idle(e->h.fd)) {
			drop(r, e);
			continue;
		}
		ev_del(&e->h);
		fd = e->h.fd;
		e->h.fd = -1;
		bury(r, e);
		return fd;
	}
	return -1;
}

int reuse_take(struct reuse *r, const char *pool, const struct sockaddr_any *addr,
	       const void *owner, bool *private)
{
	int fd = -1;

	*private = false;
	if (owner && r->nprivate)
		fd = take_exact(r, pool, addr, owner);
	if (fd >= 0) {
		*private = true;
		return fd;
	}
	return take_exact(r, pool, addr, NULL);
}

void reuse_event(struct handle *h, uint32_t events)
{
	struct idle *e = h->owner;

	(void)events; /* data, FIN or error: an idle connection is done either way */
	if (h->fd >= 0)
		drop(e->store, e);
}

void reuse_expire(struct reuse *r, uint64_t now, unsigned max)
{
	struct idle *e, *prev;

	if (!r)
		return;
	while (r->n > max)
		drop(r, r->tail);
	for (e = r->tail; e; e = prev) {
		prev = e->prev;
		if (e->deadline_ms <= now)
			drop(r, e);
	}
}

void reuse_drop_owner(struct reuse *r, const void *owner)
{
	struct idle *e, *next;

	for (e = r && r->nprivate ? r->head : NULL; e; e = next) {
		next = e->next;
		if (e->owner == owner)
			drop(r, e);
	}
}

unsigned reuse_count(const struct reuse *r)
{
	return r ? r->n : 0;
}

/* ---- for the stages: which requests may use the store, and parking ---- */

/*
 * True if @c's request may go on a connection that the peer may have closed already:
 * it can be sent again. Idempotent methods only (RFC 9110 9.2.2), and a body only if
 * all of it is in cbuf now (then it is sent with the head and kept for the resend).
 */
static bool resendable(const struct conn *c)
{
	switch (c->req->method) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
	case HTTP_PUT:
	case HTTP_DELETE:
		break;
	default:
		return false;
	}
	switch (http_body_framing(c->req)) {
	case HTTP_BODY_NONE:
		return true;
	case HTTP_BODY_LENGTH:
		return c->clen - (size_t)c->req_len >= c->req->content_length;
	default:
		return false; /* chunked: whether it is all in would need a parse */
	}
}

/*
 * Credentials a server may tie to the connection (NTLM, Negotiate do), and the PROXY
 * header that names this client: such a connection is for this client only.
 */
static bool client_bound(const struct conn *c)
{
	return c->pool->send_proxy || http_find_field(c->req, c->cbuf, "Authorization", 0) >= 0 ||
	       http_find_field(c->req, c->cbuf, "Proxy-Authorization", 0) >= 0;
}

bool reuse_take_for(struct conn *c, const struct sockaddr_any *to)
{
	bool private;
	int fd;

	/*
	 * Never for CONNECT nor action = tunnel (raw bytes after the head); nor for a resend
	 * after a reused connection failed: it goes fresh, and its head has left cbuf.
	 */
	if (!c->http_fwd || c->raw_tunnel || c->reuse_retried)
		return false;
	c->reuse_private = client_bound(c);
	if (!c->cfg->upstream_idle_max || !resendable(c))
		return false;
	fd = reuse_take(c->gw->reuse, c->pool->name, to, c, &private);
	if (fd < 0)
		return false;
	c->reuse_private |= private;
	c->uh.fd = fd;
	c->reused = true;
	c->gw->stats.upstream_reused++;
	return true;
}

void reuse_park(struct conn *c)
{
	const struct config *cfg = c->gw->cfg; /* the bounds in effect now, after a reload too */
	const struct sockaddr_any *key = c->server ? &c->server->addr : &c->uaddr;
	int fd = c->uh.fd;

	if (fd < 0 || !cfg->upstream_idle_max || c->gw->stopping)
		return;
	ev_del(&c->uh);
	c->uh.fd = -1;
	reuse_put(c->gw->reuse, fd, c->pool->name, key, c->reuse_private ? c : NULL,
		  cfg->upstream_idle_max, cfg->upstream_idle_timeout_ms);
}

void reuse_retry(struct conn *c)
{
	pr_debug("%s: kept upstream connection to %s was closed under the request (%s); sending it again on a new one",
		 c->cname, c->uname, strerror(-c->dial_err));
	ev_forget(&c->uh);
	obuf_free(&c->to_up);
	c->reused = false;
	c->reuse_retried = true;
	c->upstream_eof = false;
	c->ulen = 0;
	c->attempts--; /* the dial that follows is this attempt's, not a new one */
	/* A direct pool's address is still in uaddr: no second look-up. */
	if (!c->server)
		c->uaddr_set = true;
}
