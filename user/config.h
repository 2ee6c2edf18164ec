/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tunnelgated configuration: the INI file of DESIGN.md loaded into plain structs.
 * A loaded config is immutable; SIGHUP loads a new one and swaps it in.
 */
#ifndef TUNNELGATE_CONFIG_H
#define TUNNELGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define CFG_MAX_LISTEN 16
#define CFG_NAME_MAX 64
#define CFG_MAX_WORKERS 64       /* event loops (threads) at most */
#define CFG_MAX_XDP_IFS 16       /* xdp_interfaces at most */

enum relay_mode { RELAY_AUTO, RELAY_SOCKMAP, RELAY_SPLICE };
enum pause_mode { PAUSE_SOCKOPS, PAUSE_HOLD };
/* seccomp = yes | no | log (allow and log what the list lacks: for finding the list). */
enum seccomp_mode { SECCOMP_YES, SECCOMP_NO, SECCOMP_LOG };
#ifndef TG_DEFAULT_SECCOMP
#define TG_DEFAULT_SECCOMP SECCOMP_YES
#endif

/* Socket buffers of kernel relay sockets in pause = sockops (setsockopt values). */
#define TG_DEFAULT_RELAY_SNDBUF (8u << 20)
#define TG_DEFAULT_RELAY_RCVBUF 0
enum balance { BAL_ROUNDROBIN, BAL_LEASTCONN, BAL_SOURCE, BAL_TARGET };
enum rule_action { ACT_REJECT, ACT_POOL, ACT_TUNNEL };

struct server_state;
struct pool_state;

/* An upstream proxy server of a pool. */
struct server {
	struct sockaddr_any addr;
	char name[CFG_NAME_MAX]; /* "ip:port" or "[ip6]:port", for logs and the CLI */
	unsigned weight;         /* 1..1000, default 1 */
	unsigned maxconn;        /* connections through it at once; 0 = no limit */
	/*
	 * Its runtime state (pool.c), shared with every other loaded config that has
	 * the same server in a pool of the same name: a reload keeps the counts.
	 */
	struct server_state *state;
};

/* The active health check of a pool's servers (health.c). */
enum check_kind { CHECK_NONE, CHECK_CONNECT, CHECK_HTTP_CONNECT };

struct pool {
	char name[CFG_NAME_MAX];
	bool direct;             /* the gateway dials the CONNECT target itself */
	enum balance balance;
	struct server *servers;
	unsigned nservers;
	/* Health: `fall` failures in a row take a server down, `rise` checks bring it back. */
	enum check_kind check;
	char check_target[300];  /* http_connect: the CONNECT target, "host:port" */
	unsigned check_interval_ms, check_timeout_ms, rise, fall;
	/* Clients waiting for a server under its maxconn, and for how long. */
	unsigned queue_max, queue_timeout_ms;
	unsigned send_proxy;     /* PROXY protocol version sent to its upstreams; 0 = none */
	struct pool_state *state; /* runtime state (pool.c), shared across reloads by name */
};

/* An IPv4 or IPv6 prefix; IPv4 is stored as IPv4-mapped IPv6 (::ffff:a.b.c.d, len + 96). */
struct cidr {
	uint8_t addr[16];
	uint8_t len;             /* prefix length in bits, 0..128 */
};

struct rule {
	char name[CFG_NAME_MAX];
	int line;                /* line of the [rule NAME] header, for messages */
	/* Conditions; all present ones must match. NULL/0 means absent. */
	char *host;              /* canonical (host_canonical()), no port */
	char *path_prefix;       /* canonical (path_canonical()) */
	bool path_case_exact;    /* path_case = exact: path_prefix compared case-sensitively */
	char *method;            /* uppercase */
	struct cidr *client_in;
	unsigned nclient_in;
	struct cidr *client_not_in;
	unsigned nclient_not_in;
	/* The target's address (resolved before the rules run when a rule has these). */
	struct cidr *dest_in;
	unsigned ndest_in;
	struct cidr *dest_not_in;
	unsigned ndest_not_in;
	/* Action. */
	enum rule_action action;
	int pool;                /* index into config.pools: ACT_POOL, and ACT_TUNNEL (-1: default) */
};

struct config {
	char *path;
	struct sockaddr_any listen[CFG_MAX_LISTEN];
	bool accept_proxy[CFG_MAX_LISTEN]; /* listen[i] takes a PROXY header first */
	unsigned nlisten;
	enum relay_mode relay;
	char control[108];       /* unix socket path (sun_path size) */
	char bpf_pin_dir[256];
	bool connect_ports_any;
	uint8_t connect_ports[65536 / 8]; /* bit set per allowed port */
	unsigned header_timeout_ms;
	unsigned connect_timeout_ms;
	unsigned idle_timeout_ms; /* 0 = no limit */
	unsigned drain_timeout_ms;
	unsigned max_header_bytes;
	uint64_t max_backlog_bytes; /* per tunnel direction, kernel and splice relay */
	enum pause_mode pause;   /* how the kernel relay stops a lagging direction */
	unsigned relay_sndbuf_bytes; /* pause = sockops: SO_SNDBUF of relay sockets, 0 = kernel's */
	unsigned relay_rcvbuf_bytes; /* pause = sockops: SO_RCVBUF of relay sockets, 0 = kernel's */
	char access_log[256];    /* path, or "-" for stderr */
	bool access_log_json;    /* access_log_format = json: one JSON object per line */
	char user[64];           /* the account the daemon runs as after start-up; root: stay root */
	enum seccomp_mode seccomp; /* the syscall allow-list after start-up */
	/* The client address in forwarded plain HTTP requests: no, added to the client's
	 * X-Forwarded-For fields, or in place of them. */
	enum { XFF_NO, XFF_APPEND, XFF_REPLACE } x_forwarded_for;
	bool http_ports_any;
	uint8_t http_ports[65536 / 8]; /* ports a plain request may reach through a direct pool */
	unsigned workers;        /* event loops; 0: one per CPU the process may run on */
	/* The XDP listener guard (guard.c): on these interfaces, none: off. */
	char xdp_interfaces[CFG_MAX_XDP_IFS][16];
	unsigned nxdp_interfaces;
	struct cidr *deny;       /* sources dropped before the socket layer (config's own) */
	unsigned ndeny;
	unsigned syn_rate;       /* new connections per second per source; 0 = no limit */
	unsigned syn_burst;      /* its bucket; 0: twice syn_rate */
	unsigned max_connections; /* 0: from the fd limit (see config_max_connections()) */
	unsigned max_connections_per_client; /* 0: no limit */
	unsigned body_timeout_ms; /* a request body may pause this long */
	unsigned body_min_rate;  /* bytes/s a request body must average past body_timeout_ms */
	struct sockaddr_any resolver; /* DNS server for direct targets; len 0: resolv.conf's */
	unsigned resolver_timeout_ms; /* a look-up's answer or 504 */
	unsigned resolver_max_queries; /* look-ups in flight; more wait in order */
	struct sockaddr_any metrics_listen; /* GET /metrics served here (metrics.c); len 0: off */
	unsigned upstream_idle_max; /* idle upstream connections kept for reuse, in all; 0: none */
	unsigned upstream_idle_timeout_ms; /* an idle upstream connection closes after this */
	/*
	 * This gateway's pseudonym in Via, unique per instance so that a chain of two
	 * gateways is not taken for a loop; default "hostname:port" of the first listen.
	 */
	char via_name[128];
	struct pool *pools;
	unsigned npools;
	struct rule *rules;      /* in file order */
	unsigned nrules;
	bool rules_need_dest;    /* some rule has dest_in or dest_not_in */
	int default_pool;        /* index into pools, from [route] default */
	unsigned refs;           /* owned by the daemon: connections still using this config */
};

/*
 * Load and validate @path into @cfg (zeroed by the caller or not: it is overwritten).
 * Returns 0, or -errno with a one-line reason in @err ("FILE:LINE: what is wrong").
 * Defaults (DESIGN.md): relay auto, control /run/tunnelgate/control.sock,
 * bpf_pin_dir /sys/fs/bpf/tunnelgate, connect_ports 443, header_timeout_ms 10000,
 * connect_timeout_ms 5000, idle_timeout_ms 0, drain_timeout_ms 30000,
 * max_header_bytes 16384, max_backlog_bytes 4194304 (65536..1073741824), pause sockops,
 * relay_sndbuf_bytes and relay_rcvbuf_bytes TG_DEFAULT_RELAY_SNDBUF/RCVBUF, access_log "-"
 * (access_log_format text),
 * resolver /etc/resolv.conf's servers, resolver_timeout_ms 5000, resolver_max_queries 256,
 * user nobody, seccomp TG_DEFAULT_SECCOMP (yes), upstream_idle_max 64,
 * upstream_idle_timeout_ms 10000.
 * At least one listen and one pool are
 * required; [route] default names an existing pool (if absent and there is exactly
 * one pool, that pool is the default).
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Free everything config_load() allocated. Safe on a zeroed or failed config. */
void config_free(struct config *cfg);

/* One more reference to @cfg (cfg->refs; atomic: every worker holds configs). */
static inline void config_get(struct config *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
}

/* Drop a reference to the heap-allocated @cfg (cfg->refs); the last one frees it. */
void config_put(struct config *cfg);

/* The configuration name of @b ("roundrobin", ...). */
const char *config_balance_name(enum balance b);

/* True if a plain request may reach @port through a direct pool (http_ports). */
bool config_http_port_allowed(const struct config *cfg, unsigned port);

/* max_connections, or what the fd limit allows: (soft RLIMIT_NOFILE - 64) / 6. */
unsigned config_max_connections(const struct config *cfg);

/* The event loops to run: workers, or the CPUs the process may run on (1..CFG_MAX_WORKERS). */
unsigned config_workers(const struct config *cfg);

/* True if CONNECT to @port is allowed by connect_ports. */
bool config_port_allowed(const struct config *cfg, unsigned port);

#endif
