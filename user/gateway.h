/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The daemon's state: listeners, client connections, tunnels, the event loop, and
 * gateway.c's functions. gateway.c runs requests up to the hand-off, tunnel.c (tunnel.h)
 * relays tunnels (kernel or splice), control.c (control.h) answers tunnelctl.
 */
#ifndef TUNNELGATE_GATEWAY_H
#define TUNNELGATE_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cgroup.h"
#include "config.h"
#include "http.h"
#include "relay.h"

struct conn;
struct gateway;

enum handle_kind { H_LISTEN, H_CLIENT, H_UPSTREAM, H_SIGNAL, H_CONTROL, H_CTL_CLIENT, H_RESOLVER };

/* What epoll's data.ptr points at. */
struct handle {
	enum handle_kind kind;
	int fd;
	uint32_t events;         /* the mask epoll has now */
	bool in_epoll;
	void *owner;             /* struct conn, struct listener or struct ctl_client */
};

/* A growable output buffer. */
struct obuf {
	char *data;
	size_t len, off, cap;
};

enum conn_state {
	CS_REQ_HEAD,             /* reading the client's request head */
	CS_DIAL,                 /* non-blocking connect to the upstream */
	CS_RESP_HEAD,            /* CONNECT sent (or being sent), reading the response head */
	CS_RESP_BODY,            /* relaying a non-2xx response body to the client */
	CS_REPLY,                /* writing a final response, then next request or close */
	CS_HANDOFF,              /* writing bytes read past the heads, before the relay */
	CS_TUNNEL,               /* relaying */
};

enum relay_kind { RK_NONE, RK_SOCKMAP, RK_SPLICE };

/* One direction of a splice relay. */
struct splice_dir {
	int pipe[2];
	size_t in_pipe;          /* bytes in the pipe, not yet written to the peer */
	bool eof;                /* source socket sent FIN */
	bool shut;               /* shutdown(peer, SHUT_WR) done */
};

/* One direction of a kernel relay, for the FIN hand-over and flow control (tunnel.c). */
struct kdir {
	uint64_t read_before;    /* bytes the daemon read from the source socket */
	uint64_t peer_base;      /* bytes the daemon wrote into the peer before the hand-off */
	uint64_t released;       /* held bytes the daemon copied to the peer */
	uint64_t release_sent;   /* `released` as last written to the released map */
	uint64_t fin_received;   /* the source's tcpi_bytes_received once its FIN came */
	char *hold_buf;          /* held bytes read, not yet written to the peer */
	size_t hold_len, hold_off;
	bool eof, shut;
	bool holding;            /* the verdict program holds bytes on the source socket */
	bool paused;             /* the sockops program took the source out of `ingress` */
	bool tail;               /* paused and cannot rejoin (not established any more):
				  * the daemon copies the rest of the stream itself */
	bool tail_eof;           /* tail: the source's end of stream was read */
	uint64_t resumes;        /* the `pauses` count of the source's end at the last resume */
	uint64_t tail_copied;    /* tail: bytes the daemon copied to the peer */
	uint64_t stuck_max;      /* most held bytes seen queued behind the other direction's */
	bool wait;               /* holding, and only polling helps: redirected bytes still
				  * drain into the peer, or held bytes are still on their way
				  * into the source socket (queued behind the other direction's) */
};

struct conn {
	struct gateway *gw;
	struct config *cfg;      /* referenced (cfg->refs) for the connection's life */
	struct handle ch, uh;    /* client and upstream sockets (fd -1 when closed) */
	enum conn_state state;
	struct conn *prev, *next; /* gw->conns */
	uint64_t deadline_ms;    /* 0 = none */
	uint64_t start_ms;

	struct sockaddr_any caddr;
	char cname[64];          /* client "ip:port" */

	/* Client input: the request head, then whatever the client sent after it. */
	char *cbuf;
	size_t clen, ccap;
	struct http_head *req;   /* freed once the tunnel starts */
	ssize_t req_len;         /* head length of the current request, 0 while reading */
	uint64_t crecvd;         /* bytes read from the client socket, ever */

	/* The CONNECT target. */
	char target[300];        /* "host:port" as in the request */
	char thost[256];
	unsigned tport;

	/* Upstream. */
	struct pool *pool;
	struct server *server;   /* NULL for a direct pool */
	int attempts;
	char uname[64];          /* "ip:port" dialled */
	struct sockaddr_any uaddr;
	bool uaddr_set;          /* uaddr holds the resolved target */
	struct resolve_req *rreq; /* host name look-up in flight */
	char *ubuf;
	size_t ulen, ucap;
	struct http_head *resp;
	uint64_t urecvd;
	bool upstream_eof;

	struct obuf to_client, to_up;
	bool close_after_reply;
	bool http_fwd;           /* a plain HTTP request (not CONNECT) being forwarded */
	bool req_body_done;      /* its body has been read whole */
	uint32_t fwd_path_off, fwd_path_len; /* origin-form path in cbuf, for a direct pool */
	uint32_t fwd_auth_off, fwd_auth_len; /* absolute-form authority in cbuf, or len 0 */
	int status;              /* for the access log */

	/* Tunnel. */
	uint64_t tunnel_id;
	enum relay_kind relay;
	bool queues_unread;      /* bytes may wait unread: the kernel relay cannot take it */
	uint64_t tunnel_start_ms, last_ms;
	uint64_t bytes_up, bytes_down; /* splice relay, and bytes forwarded before the hand-off */
	struct splice_dir sdir[2];     /* [TG_DIR_UP], [TG_DIR_DOWN] */
	struct kdir kd[2];
	uint64_t cookie[2];      /* kernel relay: socket cookies of the client and upstream */
	bool rst;                /* one side reset: delivering to the other, then resetting it */
	int rst_dir;             /* the direction whose source reset */
	const char *rst_why;
	uint64_t rst_deadline_ms;
	bool watched;            /* on gw->watch: FIN hand-over, held bytes or a reset pending */
	struct conn *watch_next;
	unsigned watch_backoff_ms;
	uint64_t watch_at_ms;
};

struct listener {
	struct handle h;
	struct sockaddr_any addr;
	struct listener *next;
};

struct gw_stats {
	uint64_t accepted, requests, tunnels_total, tunnels_sockmap, tunnels_splice;
	uint64_t rejected, upstream_errors, timeouts, bad_requests;
	uint64_t holds;          /* times a slow peer made the kernel relay hold bytes */
	uint64_t pauses;         /* times a slow peer made the kernel relay pause a direction */
	uint64_t bytes_kernel, bytes_copied; /* kernel relay, closed tunnels: see tunnel_counts */
	uint64_t bytes_up, bytes_down; /* of closed tunnels */
};

struct gateway {
	struct config *cfg;      /* current config */
	const char *cfg_path;
	int epfd;
	struct handle sigh;
	struct listener *listeners;
	struct handle ctl;       /* control socket listener */
	char ctl_path[108];
	struct relay *relay;     /* NULL: splice only */
	struct tg_cgroup *cgroup; /* the daemon's own cgroup (pause = sockops), or NULL */
	struct resolver *resolver;
	struct handle resolver_h;
	enum relay_kind default_relay;
	struct conn *conns;      /* every client connection */
	unsigned nconns, ntunnels;
	struct conn *watch;      /* kernel-relayed tunnels polled for FIN hand-over or resume */
	struct conn *graveyard;  /* closed this round; freed after the event batch */
	uint64_t next_tunnel_id;
	FILE *access_log;
	bool stopping;
	uint64_t stop_deadline_ms;
	struct gw_stats stats;
};

uint64_t now_ms(void);
int gw_set_events(struct gateway *gw, struct handle *h, uint32_t events);
void gw_forget(struct handle *h);
void conn_close(struct conn *c, const char *why);
void conn_log(struct conn *c, const char *what);
int obuf_put(struct obuf *b, const void *p, size_t n);
/* Write what @b holds to @fd; 0 when empty, -EAGAIN when blocked, or -errno. */
int obuf_flush(struct obuf *b, int fd);

/* Run the daemon on @cfg (loaded from @path) until SIGTERM/SIGINT. Returns the exit code. */
int gateway_run(struct config *cfg, const char *path);
#endif
