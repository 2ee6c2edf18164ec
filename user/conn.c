// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Client connections: creation, the gateway's own replies, the access log, close. */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "access_log.h"
#include "admit.h"
#include "conn.h"
#include "http_msg.h"
#include "log.h"
#include "pool.h"
#include "resolver.h"
#include "rules.h"
#include "stats.h"
#include "reuse.h"

struct conn *conn_new(struct gateway *gw, int fd, const struct sockaddr_any *a)
{
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c) {
		c->cbuf = malloc(gw->cfg->max_header_bytes);
		c->req = malloc(sizeof(*c->req));
	}
	if (!c || !c->cbuf || !c->req || admit_add(gw->admit, a)) {
		if (c) {
			free(c->cbuf);
			free(c->req);
			free(c);
		}
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->gw = gw;
	c->cfg = gw->cfg;
	config_get(c->cfg);
	c->ccap = c->cfg->max_header_bytes;
	c->ch = (struct handle){ .kind = H_CLIENT, .fd = fd, .owner = c };
	c->uh = (struct handle){ .kind = H_UPSTREAM, .fd = -1, .owner = c };
	c->caddr = c->peer = *a;
	sockaddr_fmt(a, c->cname, sizeof(c->cname));
	c->state = CS_REQ_HEAD;
	c->start_ms = now_ms();
	c->deadline_ms = c->start_ms + c->cfg->header_timeout_ms;
	http_head_init(c->req, true, c->cfg->max_header_bytes);
	c->next = gw->conns;
	if (gw->conns)
		gw->conns->prev = c;
	gw->conns = c;
	gw->nconns++; /* conns_total: counted by accept.c before the accept */
	return c;
}

static const char *const end_names[] = {
	[END_CLIENT_FIN] = "client_fin",
	[END_UPSTREAM_FIN] = "upstream_fin",
	[END_RESET] = "reset",
	[END_IDLE_TIMEOUT] = "idle_timeout",
	[END_KILLED] = "killed",
	[END_DRAIN] = "drain",
};

/*
 * The line's `end`: c->end, or when none was set, a gateway reply's status in words
 * ("error:forbidden") and "error:closed" for anything else.
 */
static const char *end_name(const struct conn *c, bool tunnel, char *buf, size_t len)
{
	const char *p;
	size_t o;

	if (c->end == END_ERROR) {
		snprintf(buf, len, "error:%s", c->end_why ? c->end_why : "unknown");
		return buf;
	}
	if (c->end != END_NONE)
		return end_names[c->end];
	if (tunnel || !c->status)
		return "error:closed";
	o = snprintf(buf, len, "error:");
	for (p = http_reason_phrase(c->status); *p && o + 1 < len; p++)
		buf[o++] = *p == ' ' || *p == '-' ? '_' : tolower((unsigned char)*p);
	buf[o] = '\0';
	return buf;
}

void conn_set_end(struct conn *c, enum conn_end end, const char *why)
{
	if (c->end != END_NONE)
		return;
	c->end = end;
	c->end_why = why;
}

void conn_log(struct conn *c, const char *what, const char *relay, const struct conn_bytes *b)
{
	FILE *f = c->gw->access_log;
	char line[ACCESS_LINE_MAX], end[64];
	struct access_rec r = {
		.what = what, .client = c->cname, .method = c->method[0] ? c->method : NULL,
		.connect = !strcmp(c->method, "CONNECT"), .target = c->target[0] ? c->target : NULL,
		.rule = c->rule ? c->rule->name : NULL, .pool = c->pool ? c->pool->name : NULL,
		.upstream = c->uname[0] ? c->uname : NULL, .relay = relay, .status = c->status,
		.up = b->up, .down = b->down, .copied_up = b->copied_up,
		.copied_down = b->copied_down, .duration_ms = now_ms() - c->start_ms,
	};
	size_t n;

	if (!f)
		return;
	r.end = end_name(c, relay != NULL, end, sizeof(end));
	clock_gettime(CLOCK_REALTIME, &r.when);
	n = access_log_format(line, sizeof(line), c->gw->cfg->access_log_json, &r);
	fwrite(line, 1, n, f);
	fflush(f);
}

void conn_drop_upstream(struct conn *c)
{
	if (c->rreq) {
		resolver_cancel(c->gw->resolver, c->rreq);
		c->rreq = NULL;
	}
	ev_forget(&c->uh);
	pool_queue_leave(&c->qnode);
	if (c->server) {
		pool_release(c->pool, c->server);
		c->server = NULL;
	}
}

void conn_close(struct conn *c, const char *why)
{
	struct gateway *gw = c->gw;

	if (c->state == CS_CLOSED)
		return;
	if (why)
		pr_debug("%s: closing: %s", c->cname, why);
	if (c->teardown)
		c->teardown(c);
	c->state = CS_CLOSED;
	conn_drop_upstream(c);
	reuse_drop_owner(gw->reuse, c); /* its private idle upstream connections */
	ev_forget(&c->ch);
	admit_del(gw->admit, &c->peer);
	if (c->prev)
		c->prev->next = c->next;
	else
		gw->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	gw->nconns--;
	__atomic_sub_fetch(gw->conns_total, 1, __ATOMIC_RELAXED);
	free(c->cbuf);
	free(c->ubuf);
	free(c->req);
	free(c->resp);
	free(c->resend);
	obuf_free(&c->to_client);
	obuf_free(&c->to_up);
	config_put(c->cfg);
	c->cfg = NULL;
	/* Later events of this batch may still point at c. */
	c->next = gw->graveyard;
	gw->graveyard = c;
}

void conn_reset(struct conn *c, const char *why)
{
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->ch.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	setsockopt(c->uh.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	conn_close(c, why);
}

unsigned conn_close_denied(struct gateway *gw, const struct cidr *deny, unsigned n)
{
	struct conn *c, *next;
	unsigned closed = 0;

	for (c = gw->conns; c; c = next) {
		next = c->next;
		for (unsigned i = 0; i < n; i++) {
			if (!cidr_contains(&deny[i], &c->peer))
				continue;
			conn_set_end(c, END_ERROR, "denied");
			conn_reset(c, "its source is denied (deny)");
			closed++;
			break;
		}
	}
	return closed;
}

void conn_bury(struct gateway *gw)
{
	struct conn *c;

	while ((c = gw->graveyard)) {
		gw->graveyard = c->next;
		free(c->tun);
		free(c);
	}
}

bool conn_sent_past_head(struct conn *c)
{
	int pending = 0;

	if (c->clen > (size_t)c->req_len)
		return true;
	return ioctl(c->ch.fd, SIOCINQ, &pending) == 0 && pending > 0;
}

void conn_reply(struct conn *c, int status, bool keep, const char *fmt, ...)
{
	char body[512], head[256], retry[40] = "";
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
	keep = keep && c->req_len > 0 && c->req->keep_alive && !conn_sent_past_head(c);
	if (c->retry_after)
		snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", c->retry_after);
	c->retry_after = 0;
	hlen = snprintf(head, sizeof(head),
			"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s%s\r\n",
			status, http_reason_phrase(status), blen, retry,
			keep ? "" : "Connection: close\r\n");
	c->status = status;
	pr_debug("%s: %d %.*s", c->cname, status, blen - 1, body);
	conn_drop_upstream(c);
	if (obuf_put(&c->to_client, head, hlen) || obuf_put(&c->to_client, body, blen)) {
		conn_close(c, "out of memory");
		return;
	}
	conn_answered(c, status);
	c->close_after_reply = !keep;
	c->state = CS_REPLY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	conn_log(c, "reply", NULL, &(struct conn_bytes){ .up = c->body_up, .down = c->body_down });
}

int conn_take_config(struct conn *c)
{
	struct config *cur = c->gw->cfg;

	if (c->cfg == cur || c->clen)
		return 0;
	if (cur->max_header_bytes > c->ccap) {
		char *b = realloc(c->cbuf, cur->max_header_bytes);

		if (!b)
			return -ENOMEM;
		c->cbuf = b;
		c->ccap = cur->max_header_bytes;
	}
	config_get(cur);
	config_put(c->cfg);
	c->cfg = cur;
	http_head_init(c->req, true, cur->max_header_bytes);
	return 0;
}

void conn_next_request(struct conn *c)
{
	size_t rest;

	/* Draining: a connection closes once its request is answered. */
	if (c->close_after_reply || c->gw->stopping) {
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
	c->method[0] = '\0';
	c->rule = NULL;
	c->end = END_NONE;
	c->end_why = NULL;
	c->pool = NULL;
	c->uaddr_set = false;
	c->attempts = 0;
	c->dequeued = false;
	c->ulen = 0;
	c->upstream_eof = false;
	c->reused = c->reuse_private = c->reuse_retried = false;
	free(c->resend);
	c->resend = NULL;
	c->body_up = c->body_down = 0;
	c->interims = 0;
	c->http_fwd = false;
	c->raw_tunnel = false;
	c->state = CS_REQ_HEAD;
	c->start_ms = now_ms();
	c->deadline_ms = c->start_ms + c->cfg->header_timeout_ms;
	http_head_init(c->req, true, c->cfg->max_header_bytes);
}

/* The method label of the request on @c (enum req_method). */
static enum req_method req_method(const struct conn *c)
{
	if (!c->req || !c->req->complete)
		return RM_OTHER; /* no head parsed: its method is not known */
	switch (c->req->method) {
	case HTTP_CONNECT:
		return RM_CONNECT;
	case HTTP_GET:
		return RM_GET;
	case HTTP_POST:
		return RM_POST;
	case HTTP_HEAD:
		return RM_HEAD;
	case HTTP_PUT:
		return RM_PUT;
	case HTTP_DELETE:
		return RM_DELETE;
	case HTTP_OPTIONS:
		return RM_OPTIONS;
	case HTTP_PATCH:
		return RM_PATCH;
	default:
		return RM_OTHER;
	}
}

void conn_answered(struct conn *c, int status)
{
	unsigned slot = ANSWER_CODES - 1;

	if (status >= ANSWER_CODE_MIN && status < ANSWER_CODE_MIN + ANSWER_CODES - 1)
		slot = status - ANSWER_CODE_MIN;
	c->gw->stats.answers[req_method(c)][slot]++;
}

enum upstream_err upstream_err_of(int err)
{
	switch (-err) {
	case ECONNREFUSED:
		return UE_REFUSED;
	case ETIMEDOUT:
		return UE_TIMEOUT;
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
		return UE_RESET;
	default:
		return UE_UNREACHABLE;
	}
}

void conn_upstream_error(struct conn *c, enum upstream_err kind)
{
	struct upstream_errs *e = stats_uerr(&c->gw->stats, c->pool ? c->pool->name : "-",
					    c->server ? c->server->name : "-");

	e->n[kind]++;
}
