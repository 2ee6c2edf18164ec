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

enum relay_mode { RELAY_AUTO, RELAY_SOCKMAP, RELAY_SPLICE };
enum pause_mode { PAUSE_SOCKOPS, PAUSE_HOLD };

/* Socket buffers of kernel relay sockets in pause = sockops (setsockopt values). */
#define TG_DEFAULT_RELAY_SNDBUF (8u << 20)
#define TG_DEFAULT_RELAY_RCVBUF 0
enum balance { BAL_ROUNDROBIN, BAL_LEASTCONN, BAL_SOURCE, BAL_TARGET };
enum rule_action { ACT_REJECT, ACT_POOL, ACT_TUNNEL };

struct server_state;

/* An upstream proxy server of a pool. */
struct server {
	struct sockaddr_any addr;
	char name[CFG_NAME_MAX]; /* "ip:port" or "[ip6]:port", for logs and the CLI */
	unsigned weight;         /* 1..1000, default 1 */
	/*
	 * Its runtime state (pool.c), shared with every other loaded config that has
	 * the same server in a pool of the same name: a reload keeps the counts.
	 */
	struct server_state *state;
};

struct pool {
	char name[CFG_NAME_MAX];
	bool direct;             /* the gateway dials the CONNECT target itself */
	enum balance balance;
	struct server *servers;
	unsigned nservers;
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
	char *host;              /* lowercase, no port */
	char *path_prefix;       /* normalised */
	char *method;            /* uppercase */
	struct cidr *client_in;
	unsigned nclient_in;
	struct cidr *client_not_in;
	unsigned nclient_not_in;
	/* Action. */
	enum rule_action action;
	int pool;                /* index into config.pools for ACT_POOL */
};

struct config {
	char *path;
	struct sockaddr_any listen[CFG_MAX_LISTEN];
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
	bool x_forwarded_for;    /* add the client address to forwarded plain HTTP requests */
	struct pool *pools;
	unsigned npools;
	struct rule *rules;      /* in file order */
	unsigned nrules;
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
 * relay_sndbuf_bytes and relay_rcvbuf_bytes TG_DEFAULT_RELAY_SNDBUF/RCVBUF, access_log "-".
 * At least one listen and one pool are
 * required; [route] default names an existing pool (if absent and there is exactly
 * one pool, that pool is the default).
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Free everything config_load() allocated. Safe on a zeroed or failed config. */
void config_free(struct config *cfg);

/* Drop a reference to the heap-allocated @cfg (cfg->refs); the last one frees it. */
void config_put(struct config *cfg);

/* The configuration name of @b ("roundrobin", ...). */
const char *config_balance_name(enum balance b);

/* True if CONNECT to @port is allowed by connect_ports. */
bool config_port_allowed(const struct config *cfg, unsigned port);

#endif
