// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Reaching the upstream: server choice, name look-up, connect, one retry. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/tcp.h>

#include "conn.h"
#include "hist.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "proxy_proto.h"
#include "resolver.h"
#include "reuse.h"
#include "upstream.h"

static void dial(struct conn *c);

void upstream_failed(struct conn *c, int err)
{
	const char *name = c->uname;

	if (c->reused) { /* a parked connection its peer had closed: resend on a fresh one */
		reuse_retry(c);
		dial(c);
		return;
	}
	conn_upstream_error(c, upstream_err_of(err));
	if (c->server)
		pool_server_request_failed(c->pool, c->server, pool_failure_name(-err));
	/*
	 * A refused or unreachable proxy: try another server of the pool, once. What was
	 * queued for the failed one goes; the next one gets the request again from cbuf,
	 * where a CONNECT head and the bytes after it stay until the hand-off. A plain
	 * request's head has left cbuf once sent: it is not sent twice.
	 */
	if (c->server && c->attempts < 2 && c->pool->nservers > 1 && c->req_len > 0) {
		struct server *bad = c->server;

		pr_warn("upstream %s for %s: %s; trying another server of pool %s", name,
			c->target, strerror(-err), c->pool->name);
		obuf_free(&c->to_up);
		conn_drop_upstream(c);
		c->server = pool_pick(c->pool, &c->caddr, c->target, bad);
		if (c->server) {
			dial(c);
			return;
		}
	}
	conn_reply(c, 502, true, "tunnelgate: cannot connect to upstream %s for %s: %s", name,
		   c->target, strerror(-err));
	c->gw->stats.upstream_errors++;
}

/* The target of a direct pool as an address, if it is an IP literal. */
static bool literal_target(struct conn *c, struct sockaddr_any *out)
{
	return addr_from_literal(c->thost, c->tport, out);
}

/* The request would come back to this gateway: refuse it before a socket is made. */
static void loop_detected(struct conn *c, const char *where)
{
	c->gw->stats.rejected++;
	conn_reply(c, 508, false, "tunnelgate: loop detected: %s is this gateway's own listen address; send the request to another host",
		   where);
}

/* Look the target's host name up off the loop; dial() goes on when it is answered. */
static void resolve_async(struct conn *c)
{
	struct resolve_req *req = calloc(1, sizeof(*req));

	if (!req) {
		conn_reply(c, 503, false, "tunnelgate: out of memory");
		return;
	}
	snprintf(req->host, sizeof(req->host), "%s", c->thost);
	req->port = c->tport;
	req->owner = c;
	c->rreq = req;
	c->state = CS_DIAL;
	c->deadline_ms = 0; /* the resolver answers by resolver_timeout_ms */
	resolver_submit(c->gw->resolver, req);
}

void upstream_resolved(struct conn *c, const struct resolve_req *req)
{
	c->rreq = NULL;
	if (req->err)
		conn_upstream_error(c, UE_RESOLVE);
	if (req->err == -ETIMEDOUT) {
		c->gw->stats.timeouts++;
		conn_reply(c, 504, true, "tunnelgate: resolving %s timed out (resolver_timeout_ms; check that the DNS server answers)",
			   c->thost);
		return;
	}
	if (req->err) {
		conn_reply(c, 502, true, "tunnelgate: cannot resolve %s (check the name and the host's DNS settings)",
			   c->thost);
		return;
	}
	c->uaddr = req->addr;
	c->uaddr_set = true;
	/* Looked up for the rules (dest_in): they run first, then the routing. */
	if (!c->pool) {
		c->state = CS_RULES;
		return;
	}
	dial(c);
}

void upstream_lookup(struct conn *c)
{
	resolve_async(c);
}

/*
 * send_proxy: the PROXY header goes first on a new upstream connection. The client is
 * c->caddr; where it connected to is a PROXY header's destination or our socket's.
 */
static int queue_proxy_header(struct conn *c)
{
	struct sockaddr_any dst = c->daddr;
	char hdr[PROXY_BUILD_MAX];
	ssize_t n;

	if (!dst.len) {
		dst.len = sizeof(dst.ss);
		if (getsockname(c->ch.fd, &dst.sa, &dst.len))
			dst.len = 0;
	}
	n = proxy_build(c->pool->send_proxy, &c->caddr, &dst, hdr, sizeof(hdr));
	if (n < 0 || obuf_put(&c->to_up, hdr, n)) {
		conn_reply(c, 500, false, "tunnelgate: cannot build the PROXY v%u header for pool %s: %s",
			   c->pool->send_proxy, c->pool->name, strerror(n < 0 ? (int)-n : ENOMEM));
		return -1;
	}
	return 0;
}

/* Start a non-blocking connect to the chosen server or the target. */
static void dial(struct conn *c)
{
	const struct sockaddr_any *to;
	int fd, one = 1;

	c->attempts++;
	if (c->server) {
		to = &c->server->addr;
		snprintf(c->uname, sizeof(c->uname), "%s", c->server->name);
	} else {
		if (!c->uaddr_set && !literal_target(c, &c->uaddr)) {
			resolve_async(c);
			return;
		}
		c->uaddr_set = false;
		to = &c->uaddr;
		sockaddr_fmt(to, c->uname, sizeof(c->uname));
	}
	if (listener_is_self(c->gw, to)) {
		loop_detected(c, c->uname);
		return;
	}
	if (reuse_take_for(c, to)) { /* an idle keep-alive connection to the same place */
		c->state = CS_CONNECTED;
		return;
	}
	fd = socket(to->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_reply(c, 503, false, "tunnelgate: cannot create a socket: %s", strerror(errno));
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->uh.fd = fd;
	if (c->pool->send_proxy && queue_proxy_header(c))
		return;
	c->state = CS_DIAL;
	c->deadline_ms = now_ms() + c->cfg->connect_timeout_ms;
	c->dial_us = now_us();
	if (connect(fd, &to->sa, to->len) && errno != EINPROGRESS)
		upstream_failed(c, -errno);
}

/* No server of the pool is up: say so at once, and when to try again. */
static void no_server(struct conn *c)
{
	c->retry_after = (c->pool->check_interval_ms + 999) / 1000;
	conn_reply(c, 503, true, "tunnelgate: pool %s has no server up (all down or drained; see tunnelctl pools)",
		   c->pool->name);
}

/* Every usable server is at its maxconn: wait in the pool's queue, or 503 if it is full. */
static void queue(struct conn *c)
{
	struct pool *p = c->pool;

	if (c->dequeued) {
		pool_queue_retry(p, &c->qnode); /* its place and its deadline stay */
	} else if (p->state->queued >= p->queue_max) {
		c->retry_after = 1;
		conn_reply(c, 503, true, "tunnelgate: pool %s is full: every server is at its maxconn and %u clients wait (queue_max)",
			   p->name, p->state->queued);
		return;
	} else {
		pool_queue_add(p, &c->qnode);
		c->deadline_ms = now_ms() + p->queue_timeout_ms;
	}
	c->state = CS_QUEUED;
}

void upstream_queue_timeout(struct conn *c)
{
	pool_queue_leave(&c->qnode);
	pool_queue_timed_out(c->pool);
	c->gw->stats.timeouts++;
	c->retry_after = 1;
	conn_reply(c, 503, true, "tunnelgate: no server of pool %s had room within queue_timeout_ms (%u); every server is at its maxconn",
		   c->pool->name, c->pool->queue_timeout_ms);
}

void upstream_route(struct conn *c)
{
	struct sockaddr_any a;

	/* A proxy would connect back here: an address target can be checked now. */
	if (!c->pool->direct && literal_target(c, &a) && listener_is_self(c->gw, &a)) {
		loop_detected(c, c->target);
		return;
	}
	if (!c->pool->direct) {
		/* Clients already waiting go first. */
		if (!c->dequeued && c->pool->state->queued) {
			queue(c);
			return;
		}
		c->server = pool_pick(c->pool, &c->caddr, c->target, NULL);
		if (!c->server) {
			if (errno == EBUSY)
				queue(c);
			else
				no_server(c);
			return;
		}
	}
	dial(c);
}

/* Connected. A direct CONNECT is established at once; the rest send a request. */
static void connected(struct conn *c)
{
	static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	if (c->raw_tunnel) {
		c->req_len = 0; /* the hand-off sends all of cbuf: the head as the client sent it */
		c->state = CS_ESTABLISHED;
		return;
	}
	if (!c->pool->direct || c->http_fwd) {
		c->state = CS_CONNECTED;
		return;
	}
	if (obuf_put(&c->to_client, established, sizeof(established) - 1)) {
		conn_close(c, "out of memory");
		return;
	}
	c->status = 200;
	conn_answered(c, 200);
	c->state = CS_ESTABLISHED;
}

void upstream_event(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	(void)events;
	if (c->uh.fd < 0)
		return; /* still resolving */
	getsockopt(c->uh.fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		upstream_failed(c, -err);
		return;
	}
	hist_observe(&c->gw->stats.connect, &hist_connect, now_us() - c->dial_us);
	connected(c);
}

void upstream_timeout(struct conn *c)
{
	c->gw->stats.timeouts++;
	conn_upstream_error(c, UE_TIMEOUT);
	if (c->server)
		pool_server_request_failed(c->pool, c->server, "timeout");
	/* A look-up has no deadline here: resolver_timeout_ms bounds it. */
	conn_reply(c, 504, true, "tunnelgate: connecting to %s timed out after %u ms (connect_timeout_ms)",
		   c->uname, c->cfg->connect_timeout_ms);
}
