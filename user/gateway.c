// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The event loop and everything a client connection goes through before its tunnel
 * is relayed: request head, rules, upstream choice, dial, the upstream's answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "control.h"
#include "gateway.h"
#include "log.h"
#include "pool.h"
#include "resolver.h"
#include "rules.h"
#include "tunnel.h"

#define LISTEN_BACKLOG 4096
#define OBUF_HIGH (256 * 1024) /* stop reading an error body while this much waits */
#define MAX_EVENTS 256
#define TIMER_TICK_MS 50
#define IDLE_SCAN_MS 1000
#define VIA_FIELD "Via: 1.1 tunnelgate\r\n"
#define HANDOFF_MAX_BYTES (1024 * 1024) /* moved by the daemon before a kernel relay */

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int gw_set_events(struct gateway *gw, struct handle *h, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };

	if (h->fd < 0)
		return 0;
	if (h->in_epoll && h->events == events)
		return 0;
	if (epoll_ctl(gw->epfd, h->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, h->fd, &ev)) {
		pr_warn("epoll_ctl on fd %d failed: %s", h->fd, strerror(errno));
		return -errno;
	}
	h->in_epoll = true;
	h->events = events;
	return 0;
}

void gw_forget(struct handle *h)
{
	if (h->fd < 0)
		return;
	/* close() takes the fd out of epoll: no other descriptor shares its file. */
	close(h->fd);
	h->fd = -1;
	h->in_epoll = false;
	h->events = 0;
}

int obuf_put(struct obuf *b, const void *p, size_t n)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *d;

		if (b->off) {
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		while (cap < b->len + n)
			cap *= 2;
		if (cap != b->cap) {
			d = realloc(b->data, cap);
			if (!d)
				return -ENOMEM;
			b->data = d;
			b->cap = cap;
		}
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static size_t obuf_pending(const struct obuf *b)
{
	return b->len - b->off;
}

static void obuf_free(struct obuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

int obuf_flush(struct obuf *b, int fd)
{
	while (b->off < b->len) {
		ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -EAGAIN : -errno;
		}
		b->off += n;
	}
	b->off = b->len = 0;
	return 0;
}

static void config_put(struct config *cfg)
{
	if (cfg && --cfg->refs == 0) {
		config_free(cfg);
		free(cfg);
	}
}

void conn_log(struct conn *c, const char *what)
{
	FILE *f = c->gw->access_log;
	struct tunnel_counts n = { .up = c->bytes_up, .down = c->bytes_down };

	if (!f)
		return;
	if (c->state == CS_TUNNEL)
		tunnel_counters(c, &n);
	fprintf(f, "access client=%s target=%s upstream=%s status=%d relay=%s up=%llu down=%llu ms=%llu %s\n",
		c->cname, c->target[0] ? c->target : "-",
		c->uname[0] ? c->uname : "-", c->status,
		relay_kind_name(c->relay),
		(unsigned long long)n.up, (unsigned long long)n.down,
		(unsigned long long)(now_ms() - c->start_ms), what);
	fflush(f);
}

static void upstream_close(struct conn *c)
{
	if (c->rreq) {
		resolver_cancel(c->gw->resolver, c->rreq);
		c->rreq = NULL;
	}
	gw_forget(&c->uh);
	if (c->server) {
		pool_release(c->server);
		c->server = NULL;
	}
}

void conn_close(struct conn *c, const char *why)
{
	struct gateway *gw = c->gw;

	if (!c->cfg)
		return; /* already closed */
	if (why)
		pr_debug("%s: closing: %s", c->cname, why);
	if (c->state == CS_TUNNEL)
		tunnel_teardown(c);
	upstream_close(c);
	gw_forget(&c->ch);
	if (c->prev)
		c->prev->next = c->next;
	else
		gw->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	gw->nconns--;
	free(c->cbuf);
	free(c->ubuf);
	free(c->req);
	free(c->resp);
	obuf_free(&c->to_client);
	obuf_free(&c->to_up);
	config_put(c->cfg);
	c->cfg = NULL;
	/* Later events of this batch may still point at c. */
	c->next = gw->graveyard;
	gw->graveyard = c;
}

static void bury(struct gateway *gw)
{
	struct conn *c;

	while ((c = gw->graveyard)) {
		gw->graveyard = c->next;
		free(c);
	}
}

/* Client side events for the current state. */
static void conn_update(struct conn *c)
{
	struct gateway *gw = c->gw;
	uint32_t ce = 0, ue = 0;

	switch (c->state) {
	case CS_REQ_HEAD:
		ce = EPOLLIN;
		break;
	case CS_DIAL:
		ue = EPOLLOUT;
		break;
	case CS_RESP_HEAD:
		ue = EPOLLIN | (obuf_pending(&c->to_up) ? EPOLLOUT : 0);
		ce = obuf_pending(&c->to_client) ? EPOLLOUT : 0;
		break;
	case CS_RESP_BODY:
		ce = obuf_pending(&c->to_client) ? EPOLLOUT : 0;
		ue = obuf_pending(&c->to_client) < OBUF_HIGH ? EPOLLIN : 0;
		ue |= obuf_pending(&c->to_up) ? EPOLLOUT : 0;
		break;
	case CS_REPLY:
		ce = EPOLLOUT;
		break;
	case CS_HANDOFF:
		ce = obuf_pending(&c->to_client) ? EPOLLOUT : 0;
		ue = obuf_pending(&c->to_up) ? EPOLLOUT : 0;
		break;
	case CS_TUNNEL:
		return; /* tunnel.c owns the events */
	}
	/* A forwarded request's body streams up while the response may come down. */
	if (c->http_fwd && !c->req_body_done && c->state != CS_DIAL && c->state != CS_REPLY &&
	    obuf_pending(&c->to_up) < OBUF_HIGH)
		ce |= EPOLLIN;
	gw_set_events(gw, &c->ch, ce);
	if (c->uh.fd >= 0)
		gw_set_events(gw, &c->uh, ue);
}

static void reply_done(struct conn *c);

/*
 * True if the client sent bytes after its CONNECT head (an optimistic tunnel, such as
 * a TLS ClientHello): they must never be read as the next request.
 */
static bool sent_past_head(struct conn *c)
{
	int pending = 0;

	if (c->clen > (size_t)c->req_len)
		return true;
	return ioctl(c->ch.fd, SIOCINQ, &pending) == 0 && pending > 0;
}

/* Answer the client with a gateway-made response, then go on or close. */
static void reply(struct conn *c, int status, bool keep, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply(struct conn *c, int status, bool keep, const char *fmt, ...)
{
	char body[512], head[256];
	va_list ap;
	int blen, hlen;

	va_start(ap, fmt);
	blen = vsnprintf(body, sizeof(body) - 1, fmt, ap);
	va_end(ap);
	if (blen < 0)
		blen = 0;
	if (blen > (int)sizeof(body) - 2)
		blen = sizeof(body) - 2;
	body[blen++] = '\n';
	keep = keep && c->req_len > 0 && c->req->keep_alive && !sent_past_head(c);
	hlen = snprintf(head, sizeof(head),
			"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n",
			status, http_reason_phrase(status), blen, keep ? "" : "Connection: close\r\n");
	c->status = status;
	pr_debug("%s: %d %.*s", c->cname, status, blen - 1, body);
	upstream_close(c);
	if (obuf_put(&c->to_client, head, hlen) || obuf_put(&c->to_client, body, blen)) {
		conn_close(c, "out of memory");
		return;
	}
	c->close_after_reply = !keep;
	c->state = CS_REPLY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	conn_log(c, "reply");
	if (obuf_flush(&c->to_client, c->ch.fd) == 0) {
		reply_done(c);
		return;
	}
	conn_update(c);
}

static void parse_request(struct conn *c);

/* The reply is out: next request on this connection, or close. */
static void reply_done(struct conn *c)
{
	size_t rest;

	if (c->close_after_reply) {
		/* Let the client read the reply before the FIN. */
		shutdown(c->ch.fd, SHUT_WR);
		conn_close(c, NULL);
		return;
	}
	rest = c->clen - c->req_len;
	memmove(c->cbuf, c->cbuf + c->req_len, rest);
	c->clen = rest;
	c->req_len = 0;
	c->target[0] = c->uname[0] = '\0';
	c->status = 0;
	c->pool = NULL;
	c->attempts = 0;
	c->ulen = 0;
	c->upstream_eof = false;
	c->bytes_up = c->bytes_down = 0;
	c->http_fwd = false;
	c->state = CS_REQ_HEAD;
	c->start_ms = now_ms();
	c->deadline_ms = c->start_ms + c->cfg->header_timeout_ms;
	http_head_init(c->req, true, c->cfg->max_header_bytes);
	conn_update(c);
	if (c->clen)
		parse_request(c);
}

static int dial(struct conn *c);

static void upstream_failed(struct conn *c, int err)
{
	const char *name = c->uname;

	if (c->server)
		c->server->failures++;
	/* A refused or unreachable proxy: try another server of the pool, once. */
	if (c->server && c->attempts < 2 && c->pool->nservers > 1) {
		struct server *bad = c->server;

		pr_warn("upstream %s for %s: %s; trying another server of pool %s", name,
			c->target, strerror(-err), c->pool->name);
		upstream_close(c);
		c->server = pool_pick(c->pool, &c->caddr, c->target, bad);
		if (c->server) {
			dial(c);
			return;
		}
	}
	reply(c, 502, true, "tunnelgate: cannot connect to upstream %s for %s: %s", name, c->target,
	      strerror(-err));
	c->gw->stats.upstream_errors++;
}

/* The target of a direct pool as an address, if it is an IP literal. */
static bool literal_target(struct conn *c, struct sockaddr_any *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, c->thost, &out->in.sin_addr) == 1) {
		out->in.sin_family = AF_INET;
		out->in.sin_port = htons(c->tport);
		out->len = sizeof(out->in);
		return true;
	}
	if (inet_pton(AF_INET6, c->thost, &out->in6.sin6_addr) == 1) {
		out->in6.sin6_family = AF_INET6;
		out->in6.sin6_port = htons(c->tport);
		out->len = sizeof(out->in6);
		return true;
	}
	return false;
}

/* Look the target's host name up off the loop; dial() goes on when it is answered. */
static int resolve_async(struct conn *c)
{
	struct resolve_req *req = calloc(1, sizeof(*req));

	if (!req) {
		reply(c, 503, false, "tunnelgate: out of memory");
		return -ENOMEM;
	}
	snprintf(req->host, sizeof(req->host), "%s", c->thost);
	req->port = c->tport;
	req->owner = c;
	c->rreq = req;
	c->state = CS_DIAL;
	c->deadline_ms = now_ms() + c->cfg->connect_timeout_ms;
	resolver_submit(c->gw->resolver, req);
	conn_update(c);
	return 0;
}

static int dial(struct conn *c);

static void gw_resolved(struct gateway *gw)
{
	struct resolve_req *req, *next;

	for (req = resolver_done(gw->resolver); req; req = next) {
		struct conn *c = req->owner;

		next = req->next;
		c->rreq = NULL;
		if (req->err) {
			reply(c, 502, true, "tunnelgate: cannot resolve %s (check the name and the host's DNS settings)",
			      c->thost);
		} else {
			c->uaddr = req->addr;
			c->uaddr_set = true;
			dial(c);
		}
		free(req);
	}
}

/* Start a non-blocking connect to the chosen server or the target. */
static int dial(struct conn *c)
{
	const struct sockaddr_any *to;
	int fd, one = 1;

	c->attempts++;
	if (c->server) {
		to = &c->server->addr;
		snprintf(c->uname, sizeof(c->uname), "%s", c->server->name);
	} else {
		if (!c->uaddr_set && !literal_target(c, &c->uaddr))
			return resolve_async(c);
		c->uaddr_set = false;
		to = &c->uaddr;
		sockaddr_fmt(to, c->uname, sizeof(c->uname));
	}
	fd = socket(to->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		reply(c, 503, false, "tunnelgate: cannot create a socket: %s", strerror(errno));
		return -errno;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->uh.fd = fd;
	c->state = CS_DIAL;
	c->deadline_ms = now_ms() + c->cfg->connect_timeout_ms;
	if (connect(fd, &to->sa, to->len) && errno != EINPROGRESS) {
		int err = -errno;

		upstream_failed(c, err);
		return err;
	}
	conn_update(c);
	return 0;
}

static void start_handoff(struct conn *c);
static void handoff_progress(struct conn *c);
static void parse_response(struct conn *c);
static void forward_interim(struct conn *c);

static int req_body_feed(struct conn *c);
static void route(struct conn *c, const struct rule_input *in);

/*
 * The head of a forwarded request: to a proxy pool as the client sent it, to a direct
 * target in origin-form; hop-by-hop fields out, Via in, one request per connection.
 */
static ssize_t forward_head(struct conn *c, char *out, size_t outlen)
{
	char extra[640];
	const char *target = http_ptr(c->cbuf, c->req->target);
	size_t tlen = c->req->target.len;

	char host[300] = "";

	if (c->pool->direct) {
		target = c->cbuf + c->fwd_path_off;
		tlen = c->fwd_path_len;
		if (!tlen) {
			target = "/";
			tlen = 1;
		}
		/* Origin-form loses the URL's host: Host must say it (RFC 9112 3.2.2). */
		if (c->fwd_auth_len)
			snprintf(host, sizeof(host), "Host: %.*s\r\n", (int)c->fwd_auth_len,
				 c->cbuf + c->fwd_auth_off);
	}
	char xff[96] = "";

	if (c->cfg->x_forwarded_for) {
		char ip[INET6_ADDRSTRLEN] = "";

		/* A field of its own: a list field, so it adds to any the client sent. */
		if (c->caddr.sa.sa_family == AF_INET6)
			inet_ntop(AF_INET6, &c->caddr.in6.sin6_addr, ip, sizeof(ip));
		else
			inet_ntop(AF_INET, &c->caddr.in.sin_addr, ip, sizeof(ip));
		snprintf(xff, sizeof(xff), "X-Forwarded-For: %s\r\n", ip);
	}
	snprintf(extra, sizeof(extra), "%s%s%s%sConnection: close\r\n", host,
		 c->req->chunked ? "Transfer-Encoding: chunked\r\n" : "", VIA_FIELD, xff);
	return http_build_request(c->req, c->cbuf, target, tlen, host[0] ? "Host" : NULL, extra,
				  out, outlen);
}

/* The upstream socket is connected. */
static void dial_done(struct conn *c)
{
	static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	char head[16384];
	ssize_t n;

	if (c->pool->direct && !c->http_fwd) {
		if (obuf_put(&c->to_client, established, sizeof(established) - 1)) {
			conn_close(c, "out of memory");
			return;
		}
		c->status = 200;
		start_handoff(c);
		return;
	}
	if (c->http_fwd) {
		n = forward_head(c, head, sizeof(head));
	} else {
		n = http_build_connect(c->req, c->cbuf, head, sizeof(head));
	}
	if (n < 0 || obuf_put(&c->to_up, head, n)) {
		reply(c, 500, false, "tunnelgate: cannot build the upstream request: %s",
		      strerror(n < 0 ? (int)-n : ENOMEM));
		return;
	}
	if (c->http_fwd) {
		/* The head is out of cbuf now: what follows is body, then the next request. */
		memmove(c->cbuf, c->cbuf + c->req_len, c->clen - c->req_len);
		c->clen -= c->req_len;
		c->req_len = 0;
		c->req_body_done = http_body_framing(c->req) == HTTP_BODY_NONE;
		if (req_body_feed(c)) {
			conn_close(c, "bad request body framing");
			return;
		}
	}
	if (!c->ubuf) {
		c->ucap = c->cfg->max_header_bytes;
		c->ubuf = malloc(c->ucap);
	}
	if (!c->resp)
		c->resp = malloc(sizeof(*c->resp));
	if (!c->ubuf || !c->resp) {
		conn_close(c, "out of memory");
		return;
	}
	c->ulen = 0;
	http_head_init(c->resp, false, c->cfg->max_header_bytes);
	c->resp->head_only_response = c->http_fwd && c->req->method == HTTP_HEAD;
	c->state = CS_RESP_HEAD;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	n = obuf_flush(&c->to_up, c->uh.fd);
	if (n < 0 && n != -EAGAIN) {
		upstream_failed(c, n);
		return;
	}
	conn_update(c);
}

/* Bytes the client sent past the CONNECT head go to the upstream before the relay. */
static void start_handoff(struct conn *c)
{
	size_t tail = c->clen - c->req_len;

	if (tail && obuf_put(&c->to_up, c->cbuf + c->req_len, tail)) {
		conn_close(c, "out of memory");
		return;
	}
	c->bytes_up = tail;
	c->state = CS_HANDOFF;
	c->deadline_ms = 0;
	handoff_progress(c);
}

/*
 * Move what waits unread in the sockets' receive queues to the other side's buffer.
 * The kernel relay takes whole skbs from a receive queue, bytes the daemon already
 * read from them included, so a socket may join the sockhash only when nothing is
 * left unread: else those bytes would be sent twice. Returns bytes moved or -errno.
 */
static ssize_t handoff_drain(struct conn *c)
{
	char buf[65536];
	ssize_t moved = 0;

	for (int side = 0; side < 2; side++) {
		int fd = side ? c->uh.fd : c->ch.fd, inq = 0;
		struct obuf *out = side ? &c->to_client : &c->to_up;
		ssize_t n;

		if (ioctl(fd, SIOCINQ, &inq) || inq <= 0)
			continue;
		n = recv(fd, buf, (size_t)inq < sizeof(buf) ? (size_t)inq : sizeof(buf),
			 MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		if (obuf_put(out, buf, n))
			return -ENOMEM;
		if (side) {
			c->urecvd += n;
			c->bytes_down += n;
		} else {
			c->crecvd += n;
			c->bytes_up += n;
		}
		moved += n;
	}
	return moved;
}

static void handoff_progress(struct conn *c)
{
	for (;;) {
		int e1 = obuf_flush(&c->to_client, c->ch.fd);
		int e2 = obuf_flush(&c->to_up, c->uh.fd);
		ssize_t moved;

		if ((e1 && e1 != -EAGAIN) || (e2 && e2 != -EAGAIN)) {
			conn_close(c, "peer closed during hand-off");
			return;
		}
		if (e1 || e2) {
			conn_update(c);
			return;
		}
		/* A sender that keeps the queue busy goes to the splice relay instead. */
		if (c->bytes_up + c->bytes_down >= HANDOFF_MAX_BYTES) {
			c->queues_unread = true;
			break;
		}
		moved = handoff_drain(c);
		if (moved < 0) {
			conn_close(c, "peer failed during hand-off");
			return;
		}
		if (!moved)
			break;
	}
	obuf_free(&c->to_client);
	obuf_free(&c->to_up);
	tunnel_start(c);
}

/*
 * A decoded body piece on its way out: to @out, as one chunk when @chunked. Bodies
 * are re-framed rather than copied raw so the next message can never hide in them.
 */
struct body_ctx {
	struct obuf *out;
	uint64_t *count;
	bool chunked;
	int err;
};

static void body_piece(void *arg, const char *p, size_t n)
{
	struct body_ctx *b = arg;
	char line[24];
	int len;

	if (!n || b->err)
		return;
	if (b->chunked) {
		len = snprintf(line, sizeof(line), "%zx\r\n", n);
		b->err = obuf_put(b->out, line, len);
	}
	if (!b->err)
		b->err = obuf_put(b->out, p, n);
	if (!b->err && b->chunked)
		b->err = obuf_put(b->out, "\r\n", 2);
	*b->count += n;
}

/* The upstream answered the CONNECT with a non-2xx: relay it, keep the client if we can. */
static bool resp_chunked_out(struct conn *c)
{
	enum http_framing f = http_body_framing(c->resp);

	return (f == HTTP_BODY_CHUNKED || f == HTTP_BODY_CLOSE) && c->req->minor >= 1;
}

static void resp_body_done(struct conn *c)
{
	if (resp_chunked_out(c) && obuf_put(&c->to_client, "0\r\n\r\n", 5)) {
		conn_close(c, "out of memory");
		return;
	}
	upstream_close(c);
	/* The rest of an unsent request body would be read as the next request. */
	if (c->http_fwd && !c->req_body_done)
		c->close_after_reply = true;
	conn_log(c, c->http_fwd ? "http" : "refused");
	c->state = CS_REPLY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	if (obuf_flush(&c->to_client, c->ch.fd) == 0) {
		reply_done(c);
		return;
	}
	conn_update(c);
}

/* Feed body bytes in ubuf[0..ulen) to the client. */
static void resp_body_feed(struct conn *c)
{
	struct body_ctx b = { .out = &c->to_client, .count = &c->bytes_down,
			      .chunked = resp_chunked_out(c) };
	bool done = false;
	ssize_t n;

	if (!c->ulen && !c->upstream_eof)
		return;
	n = http_body_feed(c->resp, c->ubuf, c->ulen, body_piece, &b, &done);
	if (n < 0 || b.err) {
		c->close_after_reply = true;
		conn_close(c, "bad upstream response body");
		return;
	}
	c->ulen = 0;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	if (!done && c->upstream_eof) {
		if (http_body_framing(c->resp) == HTTP_BODY_CLOSE)
			http_body_eof(c->resp, &done);
		if (!done) {
			/* Truncated body: the client cannot be told in-band. */
			conn_close(c, "upstream closed in the middle of a response body");
			return;
		}
	}
	if (done)
		resp_body_done(c);
	else
		conn_update(c);
}

/* A 1xx answer to a forwarded request: pass it on and wait for the final one. */
static void forward_interim(struct conn *c)
{
	char head[16384];
	size_t rest;
	ssize_t n;

	if (c->resp->status == 101) {
		/* Upgrade is hop-by-hop and never forwarded: a switch is a broken upstream. */
		reply(c, 502, false, "tunnelgate: upstream %s switched protocols without an Upgrade request",
		      c->uname);
		return;
	}
	n = http_build_response(c->resp, c->ubuf, VIA_FIELD, head, sizeof(head));
	if (n < 0 || obuf_put(&c->to_client, head, n)) {
		reply(c, 502, false, "tunnelgate: upstream %s response head cannot be relayed",
		      c->uname);
		return;
	}
	rest = c->ulen - c->resp->head_len;
	memmove(c->ubuf, c->ubuf + c->resp->head_len, rest);
	c->ulen = rest;
	http_head_init(c->resp, false, c->cfg->max_header_bytes);
	c->resp->head_only_response = c->req->method == HTTP_HEAD;
	obuf_flush(&c->to_client, c->ch.fd);
	conn_update(c);
	if (rest)
		parse_response(c);
}

/*
 * Move the forwarded request's body from cbuf to the upstream buffer; what follows the
 * body stays in cbuf as the next request. Returns 0 or -errno.
 */
static int req_body_feed(struct conn *c)
{
	struct body_ctx b = { .out = &c->to_up, .count = &c->bytes_up, .chunked = c->req->chunked };
	bool done = false;
	ssize_t n;

	if (c->req_body_done || !c->clen)
		return 0;
	n = http_body_feed(c->req, c->cbuf, c->clen, body_piece, &b, &done);
	if (n < 0)
		return n;
	if (b.err)
		return b.err;
	memmove(c->cbuf, c->cbuf + n, c->clen - n);
	c->clen -= n;
	if (done) {
		c->req_body_done = true;
		if (c->req->chunked && obuf_put(&c->to_up, "0\r\n\r\n", 5))
			return -ENOMEM;
	}
	return 0;
}

static void req_body_read(struct conn *c)
{
	ssize_t n;
	int err;

	if (c->clen < c->ccap) {
		n = recv(c->ch.fd, c->cbuf + c->clen, c->ccap - c->clen, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_close(c, "client went away in the middle of a request body");
			return;
		}
		if (n > 0) {
			c->crecvd += n;
			c->clen += n;
		}
	}
	err = req_body_feed(c);
	if (err) {
		c->gw->stats.bad_requests++;
		conn_close(c, "bad request body framing");
		return;
	}
	err = obuf_flush(&c->to_up, c->uh.fd);
	if (err && err != -EAGAIN) {
		conn_close(c, "upstream went away in the middle of a request body");
		return;
	}
	/* A slow upload must not make the response head time out. */
	if (c->state == CS_RESP_HEAD)
		c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	conn_update(c);
}

static void response_head(struct conn *c)
{
	char head[16384], extra[160];
	enum http_framing f;
	bool keep;
	ssize_t n;

	c->status = c->resp->status;
	if (c->http_fwd && c->resp->status < 200) {
		forward_interim(c);
		return;
	}
	if (!c->http_fwd && c->resp->status >= 200 && c->resp->status < 300) {
		n = http_build_response(c->resp, c->ubuf, NULL, head, sizeof(head));
		if (n < 0 || obuf_put(&c->to_client, head, n) ||
		    obuf_put(&c->to_client, c->ubuf + c->resp->head_len, c->ulen - c->resp->head_len)) {
			reply(c, 502, false, "tunnelgate: upstream %s response head cannot be relayed",
			      c->uname);
			return;
		}
		c->bytes_down = c->ulen - c->resp->head_len;
		free(c->ubuf);
		c->ubuf = NULL;
		c->ulen = c->ucap = 0;
		start_handoff(c);
		return;
	}
	if (c->resp->status < 200) {
		/* Interim responses to a CONNECT have no use here; a proxy that sends them breaks. */
		reply(c, 502, false, "tunnelgate: upstream %s sent interim response %d to CONNECT",
		      c->uname, c->resp->status);
		return;
	}

	keep = c->req->keep_alive && (c->http_fwd || !sent_past_head(c));
	f = http_body_framing(c->resp);
	extra[0] = '\0';
	if (c->resp->head_only_response && c->resp->has_content_length)
		snprintf(extra, sizeof(extra), "Content-Length: %llu\r\n",
			 (unsigned long long)c->resp->content_length);
	else if (f == HTTP_BODY_LENGTH)
		snprintf(extra, sizeof(extra), "Content-Length: %llu\r\n",
			 (unsigned long long)c->resp->content_length);
	else if (f == HTTP_BODY_NONE && c->resp->status != 204 && c->resp->status != 304)
		snprintf(extra, sizeof(extra), "Content-Length: 0\r\n");
	else if (resp_chunked_out(c))
		snprintf(extra, sizeof(extra), "Transfer-Encoding: chunked\r\n");
	else if (f != HTTP_BODY_NONE)
		keep = false; /* HTTP/1.0 client: the close ends the body */
	if (!keep)
		strcat(extra, "Connection: close\r\n");
	if (c->http_fwd)
		strcat(extra, VIA_FIELD);
	c->close_after_reply = !keep;
	n = http_build_response(c->resp, c->ubuf, extra, head, sizeof(head));
	if (n < 0 || obuf_put(&c->to_client, head, n)) {
		reply(c, 502, false, "tunnelgate: upstream %s response head cannot be relayed",
		      c->uname);
		return;
	}
	memmove(c->ubuf, c->ubuf + c->resp->head_len, c->ulen - c->resp->head_len);
	c->ulen -= c->resp->head_len;
	c->state = CS_RESP_BODY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	if (f == HTTP_BODY_NONE) {
		resp_body_done(c);
		return;
	}
	resp_body_feed(c);
}

static void upstream_readable(struct conn *c)
{
	ssize_t n;

	if (c->state == CS_RESP_BODY && obuf_pending(&c->to_client) >= OBUF_HIGH)
		return;
	if (c->ulen == c->ucap) {
		reply(c, 502, false, "tunnelgate: upstream %s response head is larger than max_header_bytes (%u)",
		      c->uname, c->cfg->max_header_bytes);
		return;
	}
	n = recv(c->uh.fd, c->ubuf + c->ulen, c->ucap - c->ulen, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		if (c->state == CS_RESP_HEAD) {
			reply(c, 502, true, "tunnelgate: upstream %s failed before answering: %s",
			      c->uname, strerror(errno));
			return;
		}
		conn_close(c, "upstream error during response body");
		return;
	}
	c->urecvd += n;
	if (n == 0)
		c->upstream_eof = true;
	c->ulen += n;
	if (c->state == CS_RESP_BODY) {
		resp_body_feed(c);
		return;
	}
	if (n == 0) {
		reply(c, 502, true, "tunnelgate: upstream %s closed the connection without answering",
		      c->uname);
		return;
	}
	parse_response(c);
}

static void parse_response(struct conn *c)
{
	ssize_t h = http_head_parse(c->resp, c->ubuf, c->ulen);

	if (h == 0) {
		if (c->ulen == c->ucap)
			reply(c, 502, false, "tunnelgate: upstream %s response head is larger than max_header_bytes (%u)",
			      c->uname, c->cfg->max_header_bytes);
		return;
	}
	if (h < 0) {
		reply(c, 502, false, "tunnelgate: upstream %s sent a malformed response: %s", c->uname,
		      c->resp->error ? c->resp->error : "parse error");
		return;
	}
	response_head(c);
}

static void client_writable(struct conn *c)
{
	int err = obuf_flush(&c->to_client, c->ch.fd);

	if (err == -EAGAIN)
		return;
	if (err) {
		conn_close(c, "client went away");
		return;
	}
	if (c->state == CS_REPLY)
		reply_done(c);
	else
		conn_update(c);
}

/* A complete CONNECT head is in cbuf[0..req_len). */
static void handle_connect(struct conn *c)
{
	struct config *cfg = c->cfg;
	const char *t = http_ptr(c->cbuf, c->req->target);
	struct rule_input in = { .method = "CONNECT", .method_len = 7, .client = &c->caddr };
	int err;

	snprintf(c->target, sizeof(c->target), "%.*s", (int)c->req->target.len, t);
	/* What follows a CONNECT head is tunnel data: a body could smuggle a request. */
	if (c->req->chunked || (c->req->has_content_length && c->req->content_length)) {
		c->gw->stats.bad_requests++;
		reply(c, 400, false, "tunnelgate: a CONNECT request cannot have a body");
		return;
	}
	err = http_parse_authority(t, c->req->target.len, c->thost, sizeof(c->thost), &c->tport);
	if (err) {
		c->gw->stats.bad_requests++;
		reply(c, 400, false, "tunnelgate: CONNECT target '%s' is not host:port (port 1-65535, IPv6 in brackets)",
		      c->target);
		return;
	}
	if (!config_port_allowed(cfg, c->tport)) {
		c->gw->stats.rejected++;
		reply(c, 403, true, "tunnelgate: CONNECT to port %u is not allowed (connect_ports)",
		      c->tport);
		return;
	}
	in.host = c->thost;
	in.host_len = strlen(c->thost);
	route(c, &in);
}

/* Pick the pool for a request by the rules, and dial. */
static void route(struct conn *c, const struct rule_input *in)
{
	struct config *cfg = c->cfg;
	const struct rule *r = rules_match(cfg, in);

	c->pool = &cfg->pools[cfg->default_pool];
	if (r && r->action == ACT_REJECT) {
		c->gw->stats.rejected++;
		reply(c, 403, true, "tunnelgate: request rejected by rule '%s'", r->name);
		return;
	}
	if (r && r->action == ACT_POOL)
		c->pool = &cfg->pools[r->pool];
	if (!c->pool->direct) {
		c->server = pool_pick(c->pool, &c->caddr, c->target, NULL);
		if (!c->server) {
			reply(c, 503, true, "tunnelgate: pool %s has no server", c->pool->name);
			return;
		}
	}
	dial(c);
}

/* A plain HTTP request: find its target host, apply the rules, forward it. */
static void handle_http(struct conn *c)
{
	const char *t = http_ptr(c->cbuf, c->req->target), *auth, *path, *end;
	size_t tlen = c->req->target.len, alen;
	struct rule_input in = { .client = &c->caddr };
	char authority[300];
	int i;

	if (tlen >= 7 && !strncasecmp(t, "http://", 7)) {
		/* absolute-form: its host wins over any Host field */
		auth = t + 7;
		for (end = auth; end < t + tlen && *end != '/' && *end != '?' && *end != '#'; end++)
			;
		alen = end - auth;
		path = end;
	} else if (tlen && t[0] == '/') {
		i = http_find_field(c->req, c->cbuf, "Host", 0);
		if (i < 0 || http_find_field(c->req, c->cbuf, "Host", i + 1) >= 0) {
			reply(c, 400, false, "tunnelgate: an origin-form request needs exactly one Host field");
			return;
		}
		auth = http_ptr(c->cbuf, c->req->fields[i].value);
		alen = c->req->fields[i].value.len;
		path = t;
	} else {
		reply(c, 400, false, "tunnelgate: request target must be /path or http://host/path%s",
		      c->req->method == HTTP_OPTIONS ? "" : " (host:port is for CONNECT only)");
		return;
	}
	/* Default port 80 unless the authority ends in one (mind IPv6 brackets). */
	end = memrchr(auth, ':', alen);
	snprintf(authority, sizeof(authority), "%.*s%s", (int)alen, auth,
		 !end || memrchr(auth, ']', alen) > (const void *)end ? ":80" : "");
	if (alen >= sizeof(authority) - 4 ||
	    http_parse_authority(authority, strlen(authority), c->thost, sizeof(c->thost),
				 &c->tport)) {
		reply(c, 400, false, "tunnelgate: request host '%.*s' is not host[:port]", (int)alen,
		      auth);
		return;
	}
	snprintf(c->target, sizeof(c->target), "%s", authority);
	c->fwd_path_off = path - c->cbuf;
	c->fwd_path_len = t + tlen - path;
	/* The URL's authority as written, for a Host field; none for origin-form. */
	c->fwd_auth_off = auth - c->cbuf;
	c->fwd_auth_len = path == t ? 0 : alen;
	c->http_fwd = true;
	c->req_body_done = false;
	in.method = http_ptr(c->cbuf, c->req->method_s);
	in.method_len = c->req->method_s.len;
	in.host = c->thost;
	in.host_len = strlen(c->thost);
	in.path = c->fwd_path_len ? path : "/";
	in.path_len = c->fwd_path_len ? c->fwd_path_len : 1;
	route(c, &in);
}

static void parse_request(struct conn *c)
{
	ssize_t n = http_head_parse(c->req, c->cbuf, c->clen);

	if (n == 0) {
		if (c->clen == c->ccap) {
			c->gw->stats.bad_requests++;
			reply(c, 431, false, "tunnelgate: request head is larger than max_header_bytes (%u)",
			      c->cfg->max_header_bytes);
		}
		return;
	}
	if (n < 0) {
		c->gw->stats.bad_requests++;
		reply(c, c->req->error_status ? c->req->error_status : 400, false,
		      "tunnelgate: bad request: %s", c->req->error ? c->req->error : "parse error");
		return;
	}
	c->req_len = n;
	c->gw->stats.requests++;
	if (c->req->method != HTTP_CONNECT) {
		handle_http(c);
		return;
	}
	handle_connect(c);
}

static void client_readable(struct conn *c)
{
	ssize_t n;

	if (c->clen == c->ccap)
		return parse_request(c);
	n = recv(c->ch.fd, c->cbuf + c->clen, c->ccap - c->clen, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_close(c, strerror(errno));
		return;
	}
	if (n == 0) {
		conn_close(c, c->clen ? "client closed in the middle of a request head" : NULL);
		return;
	}
	c->crecvd += n;
	c->clen += n;
	parse_request(c);
}

static void conn_event(struct conn *c, struct handle *h, uint32_t events)
{
	if (c->state == CS_TUNNEL) {
		tunnel_event(c, h, events);
		return;
	}
	if (h->kind == H_CLIENT) {
		if (events & EPOLLERR) {
			conn_close(c, "client socket error");
			return;
		}
		if ((events & EPOLLOUT) && obuf_pending(&c->to_client)) {
			if (c->state == CS_HANDOFF)
				handoff_progress(c);
			else
				client_writable(c);
			return;
		}
		if (!(events & (EPOLLIN | EPOLLHUP)))
			return;
		if (c->state == CS_REQ_HEAD)
			client_readable(c);
		else if (c->http_fwd && !c->req_body_done)
			req_body_read(c);
		return;
	}
	/* Upstream. */
	switch (c->state) {
	case CS_DIAL: {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			upstream_failed(c, -err);
			return;
		}
		dial_done(c);
		return;
	}
	case CS_RESP_HEAD:
	case CS_RESP_BODY:
		if ((events & EPOLLOUT) && obuf_pending(&c->to_up)) {
			int err = obuf_flush(&c->to_up, h->fd);

			if (err && err != -EAGAIN) {
				if (c->state == CS_RESP_HEAD)
					reply(c, 502, false, "tunnelgate: cannot send the request to upstream %s: %s",
					      c->uname, strerror(-err));
				else
					conn_close(c, "upstream went away in the middle of a request body");
				return;
			}
			conn_update(c);
		}
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			upstream_readable(c);
		return;
	case CS_HANDOFF:
		handoff_progress(c);
		return;
	default:
		if (events & EPOLLERR)
			upstream_close(c);
		return;
	}
}

static void accept_ready(struct gateway *gw, struct listener *l)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_any a = { .len = sizeof(a.ss) };
		struct conn *c;
		int fd, one = 1;

		fd = accept4(l->h.fd, &a.sa, &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				pr_warn("cannot accept: %s (raise the fd limit: ulimit -n)",
					strerror(errno));
			return;
		}
		c = calloc(1, sizeof(*c));
		if (c) {
			c->cbuf = malloc(gw->cfg->max_header_bytes);
			c->req = malloc(sizeof(*c->req));
		}
		if (!c || !c->cbuf || !c->req) {
			pr_warn("cannot accept: out of memory");
			if (c) {
				free(c->cbuf);
				free(c->req);
				free(c);
			}
			close(fd);
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->gw = gw;
		c->cfg = gw->cfg;
		c->cfg->refs++;
		c->ccap = c->cfg->max_header_bytes;
		c->ch = (struct handle){ .kind = H_CLIENT, .fd = fd, .owner = c };
		c->uh = (struct handle){ .kind = H_UPSTREAM, .fd = -1, .owner = c };
		for (int d = 0; d < 2; d++)
			c->sdir[d].pipe[0] = c->sdir[d].pipe[1] = -1;
		c->caddr = a;
		sockaddr_fmt(&a, c->cname, sizeof(c->cname));
		c->state = CS_REQ_HEAD;
		c->start_ms = now_ms();
		c->deadline_ms = c->start_ms + c->cfg->header_timeout_ms;
		http_head_init(c->req, true, c->cfg->max_header_bytes);
		c->next = gw->conns;
		if (gw->conns)
			gw->conns->prev = c;
		gw->conns = c;
		gw->nconns++;
		gw->stats.accepted++;
		conn_update(c);
	}
}

static void check_deadlines(struct gateway *gw)
{
	uint64_t now = now_ms();
	struct conn *c, *next;

	for (c = gw->conns; c; c = next) {
		next = c->next;
		if (!c->deadline_ms || c->deadline_ms > now)
			continue;
		switch (c->state) {
		case CS_REQ_HEAD:
			if (!c->clen) {
				conn_close(c, "idle client connection timed out");
				break;
			}
			gw->stats.timeouts++;
			reply(c, 408, false, "tunnelgate: request head not complete within header_timeout_ms (%u)",
			      c->cfg->header_timeout_ms);
			break;
		case CS_DIAL:
			gw->stats.timeouts++;
			if (c->server)
				c->server->failures++;
			reply(c, 504, true, "tunnelgate: %s %s timed out after %u ms (connect_timeout_ms)",
			      c->rreq ? "resolving" : "connecting to", c->rreq ? c->thost : c->uname,
			      c->cfg->connect_timeout_ms);
			break;
		case CS_RESP_HEAD:
			gw->stats.timeouts++;
			reply(c, 504, false, "tunnelgate: upstream %s did not answer within header_timeout_ms (%u)",
			      c->uname, c->cfg->header_timeout_ms);
			break;
		default:
			conn_close(c, "response could not be delivered in time");
			break;
		}
	}
}

/* Close tunnels idle for longer than idle_timeout_ms (the BPF last-activity time). */
static void idle_scan(struct gateway *gw)
{
	struct conn *c, *next;

	for (c = gw->conns; c; c = next) {
		struct tunnel_counts n;

		next = c->next;
		if (c->state != CS_TUNNEL || !c->cfg->idle_timeout_ms)
			continue;
		tunnel_counters(c, &n);
		if (n.idle_ms >= c->cfg->idle_timeout_ms)
			conn_close(c, "tunnel idle for idle_timeout_ms");
	}
}

/* Open a listening socket for @a. */
static int listen_on(const struct sockaddr_any *a)
{
	int fd, one = 1;
	char name[64];

	fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->sa.sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, &a->sa, a->len) || listen(fd, LISTEN_BACKLOG)) {
		int err = -errno;

		pr_warn("cannot listen on %s: %s%s", sockaddr_fmt(a, name, sizeof(name)),
			strerror(errno),
			errno == EADDRINUSE ? " (another process has it: stop it or change listen)" : "");
		close(fd);
		return err;
	}
	return fd;
}

static bool same_addr(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	return a->len == b->len && !memcmp(&a->ss, &b->ss, a->len);
}

/* Make the listeners match @cfg, keeping sockets whose address did not change. */
static int listeners_sync(struct gateway *gw, struct config *cfg)
{
	struct listener *keep = NULL, *l, *next;
	int fd;

	for (unsigned i = 0; i < cfg->nlisten; i++) {
		struct listener **pp;

		for (pp = &gw->listeners; *pp; pp = &(*pp)->next)
			if (same_addr(&(*pp)->addr, &cfg->listen[i]))
				break;
		if (*pp) {
			l = *pp;
			*pp = l->next;
		} else {
			fd = listen_on(&cfg->listen[i]);
			if (fd < 0)
				goto fail;
			l = calloc(1, sizeof(*l));
			if (!l) {
				close(fd);
				goto fail;
			}
			l->h = (struct handle){ .kind = H_LISTEN, .fd = fd, .owner = l };
			l->addr = cfg->listen[i];
			gw_set_events(gw, &l->h, EPOLLIN);
		}
		l->next = keep;
		keep = l;
	}
	for (l = gw->listeners; l; l = next) {
		next = l->next;
		gw_forget(&l->h);
		free(l);
	}
	gw->listeners = keep;
	return 0;
fail:
	/* Put back what we took; new sockets stay open and are used. */
	while (keep) {
		l = keep;
		keep = keep->next;
		l->next = gw->listeners;
		gw->listeners = l;
	}
	return -EADDRNOTAVAIL;
}

static void listeners_close(struct gateway *gw)
{
	struct listener *l, *next;

	for (l = gw->listeners; l; l = next) {
		next = l->next;
		gw_forget(&l->h);
		free(l);
	}
	gw->listeners = NULL;
}

static FILE *open_access_log(const char *path)
{
	FILE *f;

	if (!strcmp(path, "-"))
		return stderr;
	f = fopen(path, "ae");
	if (!f)
		pr_warn("cannot open access_log %s: %s (logging to stderr instead)", path,
			strerror(errno));
	return f ? f : stderr;
}

static void reload(struct gateway *gw)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	char err[512];

	if (!cfg)
		return;
	if (config_load(gw->cfg_path, cfg, err, sizeof(err))) {
		pr_warn("reload failed, keeping the running config: %s", err);
		config_free(cfg);
		free(cfg);
		return;
	}
	if (listeners_sync(gw, cfg)) {
		pr_warn("reload failed, keeping the running config: a listen address is not available");
		config_free(cfg);
		free(cfg);
		return;
	}
	if (strcmp(cfg->bpf_pin_dir, gw->cfg->bpf_pin_dir) || cfg->relay != gw->cfg->relay ||
	    cfg->pause != gw->cfg->pause)
		pr_warn("reload: relay, pause and bpf_pin_dir changes take effect on restart only");
	if (strcmp(cfg->control, gw->ctl_path)) {
		control_close(gw);
		control_open(gw, cfg->control);
	}
	if (gw->access_log && gw->access_log != stderr)
		fclose(gw->access_log);
	gw->access_log = open_access_log(cfg->access_log);
	cfg->refs = 1;
	config_put(gw->cfg);
	gw->cfg = cfg;
	if (gw->relay) {
		relay_set_max_backlog(gw->relay, cfg->max_backlog_bytes);
		relay_set_bufs(gw->relay, cfg->relay_sndbuf_bytes, cfg->relay_rcvbuf_bytes);
	}
	pr_info("reloaded %s: %u listeners, %u pools, %u rules", gw->cfg_path, cfg->nlisten,
		cfg->npools, cfg->nrules);
}

static int signal_event(struct gateway *gw)
{
	struct signalfd_siginfo si;

	while (read(gw->sigh.fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(gw);
			continue;
		}
		if (gw->stopping) {
			pr_info("second signal: exiting now");
			return 1;
		}
		pr_info("signal %d: closing listeners, draining %u tunnels for up to %u ms",
			si.ssi_signo, gw->ntunnels, gw->cfg->drain_timeout_ms);
		gw->stopping = true;
		gw->stop_deadline_ms = now_ms() + gw->cfg->drain_timeout_ms;
		listeners_close(gw);
		control_close(gw);
	}
	return 0;
}

static int setup_signals(struct gateway *gw)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	gw->sigh = (struct handle){ .kind = H_SIGNAL, .owner = gw };
	gw->sigh.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (gw->sigh.fd < 0)
		return -errno;
	return gw_set_events(gw, &gw->sigh, EPOLLIN);
}

/*
 * pause = sockops: the sockops program runs for the sockets of its cgroup's processes,
 * and a socket's cgroup is fixed when it is created (an accepted one takes its
 * listener's), so the daemon joins its own child cgroup before it opens any socket.
 */
static void enter_cgroup(struct gateway *gw, char *why, size_t len)
{
	if (gw->cfg->relay == RELAY_SPLICE || gw->cfg->pause != PAUSE_SOCKOPS)
		return;
	gw->cgroup = cgroup_enter(gw->cfg->bpf_pin_dir, why, len);
}

static int open_relay(struct gateway *gw, const char *pause_why)
{
	char why[512], pwhy[512];

	gw->default_relay = RK_SPLICE;
	if (gw->cfg->relay == RELAY_SPLICE)
		return 0;
	snprintf(pwhy, sizeof(pwhy), "%s", pause_why);
	gw->relay = relay_open(gw->cfg->bpf_pin_dir, gw->cgroup ? cgroup_fd(gw->cgroup) : -1,
			       pwhy, why, sizeof(why));
	if (gw->relay) {
		gw->default_relay = RK_SOCKMAP;
		relay_set_max_backlog(gw->relay, gw->cfg->max_backlog_bytes);
		relay_set_bufs(gw->relay, gw->cfg->relay_sndbuf_bytes, gw->cfg->relay_rcvbuf_bytes);
		if (gw->cfg->pause == PAUSE_SOCKOPS && !relay_pausing(gw->relay))
			pr_warn("pause = sockops: holding bytes instead (pause = hold): %s", pwhy);
		return 0;
	}
	if (gw->cfg->relay == RELAY_SOCKMAP) {
		pr_warn("relay = sockmap: %s", why);
		return -errno;
	}
	pr_warn("relay = auto: using splice, the kernel relay is unavailable: %s", why);
	return 0;
}

static void shutdown_all(struct gateway *gw)
{
	while (gw->conns)
		conn_close(gw->conns, "daemon exiting");
	listeners_close(gw);
	control_close(gw);
	relay_close(gw->relay);
	cgroup_leave(gw->cgroup);
	if (gw->resolver) {
		epoll_ctl(gw->epfd, EPOLL_CTL_DEL, gw->resolver_h.fd, NULL);
		resolver_stop(gw->resolver); /* closes its fd */
	}
	gw_forget(&gw->sigh);
	if (gw->access_log && gw->access_log != stderr)
		fclose(gw->access_log);
	close(gw->epfd);
	config_put(gw->cfg);
	bury(gw);
}

int gateway_run(struct config *cfg, const char *path)
{
	struct gateway gw = { .cfg = cfg, .cfg_path = path, .ctl = { .fd = -1 } };
	struct epoll_event ev[MAX_EVENTS];
	uint64_t last_tick = 0, last_idle_scan = 0;
	char pause_why[512] = "";
	int rc = 1;

	cfg->refs = 1;
	gw.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (gw.epfd < 0) {
		pr_warn("cannot create epoll instance: %s", strerror(errno));
		return 1;
	}
	gw.access_log = open_access_log(cfg->access_log);
	if (setup_signals(&gw)) {
		pr_warn("cannot set up signal handling: %s", strerror(errno));
		goto out;
	}
	enter_cgroup(&gw, pause_why, sizeof(pause_why));
	/* Listeners and control first: they fail if another daemon has them, before
	 * the relay would replace that daemon's pinned maps. */
	if (listeners_sync(&gw, cfg))
		goto out;
	if (control_open(&gw, cfg->control))
		goto out;
	if (open_relay(&gw, pause_why))
		goto out;
	gw.resolver = resolver_start();
	if (!gw.resolver) {
		pr_warn("cannot start the name resolver thread: %s", strerror(errno));
		goto out;
	}
	gw.resolver_h = (struct handle){ .kind = H_RESOLVER, .fd = resolver_fd(gw.resolver),
					 .owner = &gw };
	gw_set_events(&gw, &gw.resolver_h, EPOLLIN);
	pr_info("listening on %u address(es), relay %s%s, control %s", cfg->nlisten,
		relay_kind_name(gw.default_relay),
		gw.relay ? relay_pausing(gw.relay) ? " (pause sockops)" : " (pause hold)" : "",
		cfg->control);

	for (;;) {
		int timeout = gw.conns ? TIMER_TICK_MS : -1;
		int drain = tunnel_watch_poll(&gw);
		int n;

		if (drain >= 0 && (timeout < 0 || drain < timeout))
			timeout = drain;
		if (gw.stopping) {
			if (!gw.conns)
				break;
			if (now_ms() >= gw.stop_deadline_ms) {
				pr_info("drain_timeout_ms reached: closing %u connections", gw.nconns);
				break;
			}
			if (timeout < 0 || timeout > TIMER_TICK_MS)
				timeout = TIMER_TICK_MS;
		}
		n = epoll_wait(gw.epfd, ev, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			pr_warn("epoll_wait failed: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct handle *h = ev[i].data.ptr;

			switch (h->kind) {
			case H_LISTEN:
				accept_ready(&gw, h->owner);
				break;
			case H_CLIENT:
			case H_UPSTREAM:
				/* The connection may have been closed by an earlier event. */
				if (h->fd >= 0)
					conn_event(h->owner, h, ev[i].events);
				break;
			case H_SIGNAL:
				if (signal_event(&gw))
					goto done;
				break;
			case H_CONTROL:
			case H_CTL_CLIENT:
				control_event(&gw, h, ev[i].events);
				break;
			case H_RESOLVER:
				gw_resolved(&gw);
				break;

			}
		}
		if (now_ms() - last_tick >= TIMER_TICK_MS) {
			last_tick = now_ms();
			check_deadlines(&gw);
		}
		if (now_ms() - last_idle_scan >= IDLE_SCAN_MS) {
			last_idle_scan = now_ms();
			idle_scan(&gw);
		}
		bury(&gw);
	}
done:
	rc = 0;
out:
	shutdown_all(&gw);
	return rc;
}
