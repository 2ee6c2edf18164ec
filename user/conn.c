// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Client connections: creation, the gateway's own replies, the access log, close. */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "admit.h"
#include "conn.h"
#include "http_msg.h"
#include "log.h"
#include "pool.h"
#include "resolver.h"

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
	c->cfg->refs++;
	c->ccap = c->cfg->max_header_bytes;
	c->ch = (struct handle){ .kind = H_CLIENT, .fd = fd, .owner = c };
	c->uh = (struct handle){ .kind = H_UPSTREAM, .fd = -1, .owner = c };
	c->caddr = *a;
	sockaddr_fmt(a, c->cname, sizeof(c->cname));
	c->state = CS_REQ_HEAD;
	c->start_ms = now_ms();
	c->deadline_ms = c->start_ms + c->cfg->header_timeout_ms;
	http_head_init(c->req, true, c->cfg->max_header_bytes);
	c->next = gw->conns;
	if (gw->conns)
		gw->conns->prev = c;
	gw->conns = c;
	gw->nconns++;
	return c;
}

void conn_log(struct conn *c, const char *what, const char *relay, uint64_t up, uint64_t down)
{
	FILE *f = c->gw->access_log;

	if (!f)
		return;
	fprintf(f, "access client=%s target=%s upstream=%s status=%d relay=%s up=%llu down=%llu ms=%llu %s\n",
		c->cname, c->target[0] ? c->target : "-",
		c->uname[0] ? c->uname : "-", c->status, relay,
		(unsigned long long)up, (unsigned long long)down,
		(unsigned long long)(now_ms() - c->start_ms), what);
	fflush(f);
}

void conn_drop_upstream(struct conn *c)
{
	if (c->rreq) {
		resolver_cancel(c->gw->resolver, c->rreq);
		c->rreq = NULL;
	}
	ev_forget(&c->uh);
	if (c->server) {
		pool_release(c->server);
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
	ev_forget(&c->ch);
	admit_del(gw->admit, &c->caddr);
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

void conn_reset(struct conn *c, const char *why)
{
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->ch.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	setsockopt(c->uh.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	conn_close(c, why);
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
	keep = keep && c->req_len > 0 && c->req->keep_alive && !conn_sent_past_head(c);
	hlen = snprintf(head, sizeof(head),
			"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n",
			status, http_reason_phrase(status), blen, keep ? "" : "Connection: close\r\n");
	c->status = status;
	pr_debug("%s: %d %.*s", c->cname, status, blen - 1, body);
	conn_drop_upstream(c);
	if (obuf_put(&c->to_client, head, hlen) || obuf_put(&c->to_client, body, blen)) {
		conn_close(c, "out of memory");
		return;
	}
	c->close_after_reply = !keep;
	c->state = CS_REPLY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	conn_log(c, "reply", "-", c->body_up, c->body_down);
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
	cur->refs++;
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
	c->pool = NULL;
	c->uaddr_set = false;
	c->attempts = 0;
	c->ulen = 0;
	c->upstream_eof = false;
	c->body_up = c->body_down = 0;
	c->interims = 0;
	c->http_fwd = false;
	c->state = CS_REQ_HEAD;
	c->start_ms = now_ms();
	c->deadline_ms = c->start_ms + c->cfg->header_timeout_ms;
	http_head_init(c->req, true, c->cfg->max_header_bytes);
}
