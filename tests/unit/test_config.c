// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* config_load() on temporary files: every option, every default, every error class. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pool.h"

/* The fixture owns the temp file and the config: a failed assert longjmps past us. */
struct fx {
	char path[64];
	struct config cfg;
	char err[512];
	int ret;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	config_free(&fx->cfg);
	if (fx->path[0])
		unlink(fx->path);
	free(fx);
	return 0;
}

static int load(struct fx *fx, const char *text)
{
	int fd;

	config_free(&fx->cfg);
	if (fx->path[0])
		unlink(fx->path);
	strcpy(fx->path, "/tmp/test_config.XXXXXX");
	fd = mkstemp(fx->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	fx->ret = config_load(fx->path, &fx->cfg, fx->err, sizeof(fx->err));
	return fx->ret;
}

static void load_ok(struct fx *fx, const char *text)
{
	if (load(fx, text))
		fail_msg("config_load failed: %d %s", fx->ret, fx->err);
	assert_string_equal(fx->err, "");
}

#define MINIMAL "[gateway]\nlisten = 127.0.0.1:3128\n[pool direct]\ndirect = yes\n"

static const char full_conf[] =
	"[gateway]\n"
	"listen = 127.0.0.1:3128          ; host:port, may repeat\n"
	"relay = auto                     ; auto | sockmap | splice\n"
	"control = /run/tunnelgate/control.sock\n"
	"bpf_pin_dir = /sys/fs/bpf/tunnelgate\n"
	"connect_ports = 443              ; allowed CONNECT target ports, comma list, or *\n"
	"header_timeout_ms = 10000        ; whole request/response head must arrive in time\n"
	"connect_timeout_ms = 5000        ; dialing an upstream\n"
	"idle_timeout_ms = 0              ; tunnel idle limit, 0 = none\n"
	"drain_timeout_ms = 30000         ; on SIGTERM, how long open tunnels may finish\n"
	"max_header_bytes = 16384\n"
	"access_log = -                   ; path, or - for stderr\n"
	"\n"
	"[pool proxies]\n"
	"balance = roundrobin             ; roundrobin | leastconn | source | target\n"
	"server = 127.0.0.1:8888          ; host:port [weight=N], may repeat\n"
	"server = 127.0.0.1:8889 weight=2\n"
	"\n"
	"[pool local]\n"
	"direct = yes                     ; the gateway itself connects to the CONNECT target\n"
	"\n"
	"[rule admin-guard]               ; rules run in file order; first terminal action wins\n"
	"path_prefix = /admin\n"
	"client_not_in = 10.0.0.0/8       ; comma list of CIDRs (IPv4 and IPv6)\n"
	"action = reject                  ; reject (403) | pool NAME | tunnel\n"
	"\n"
	"[rule by-host]\n"
	"host = Some.Host.com\n"
	"method = get\n"
	"client_in = 192.168.0.0/16, fd00::/8\n"
	"action = pool somepool\n"
	"\n"
	"[rule pass]\n"
	"action = tunnel\n"
	"\n"
	"[pool somepool]\n"
	"balance = leastconn\n"
	"server = [::1]:8080 weight=1000\n"
	"\n"
	"[route]\n"
	"default = proxies                ; pool used when no rule picks one\n";

static void test_full(void **state)
{
	struct fx *fx = *state;
	struct config *c = &fx->cfg;
	char buf[64];

	load_ok(fx, full_conf);
	assert_string_equal(c->path, fx->path);
	assert_int_equal(c->nlisten, 1);
	assert_string_equal(sockaddr_fmt(&c->listen[0], buf, sizeof(buf)), "127.0.0.1:3128");
	assert_int_equal(c->listen[0].len, sizeof(struct sockaddr_in));
	assert_int_equal(c->relay, RELAY_AUTO);
	assert_string_equal(c->control, "/run/tunnelgate/control.sock");
	assert_string_equal(c->bpf_pin_dir, "/sys/fs/bpf/tunnelgate");
	assert_true(config_port_allowed(c, 443));
	assert_false(config_port_allowed(c, 80));
	assert_string_equal(c->access_log, "-");

	assert_int_equal(c->npools, 3);
	assert_string_equal(c->pools[0].name, "proxies");
	assert_int_equal(c->pools[0].balance, BAL_ROUNDROBIN);
	assert_false(c->pools[0].direct);
	assert_int_equal(c->pools[0].nservers, 2);
	assert_string_equal(c->pools[0].servers[0].name, "127.0.0.1:8888");
	assert_int_equal(c->pools[0].servers[0].weight, 1);
	assert_string_equal(c->pools[0].servers[1].name, "127.0.0.1:8889");
	assert_int_equal(c->pools[0].servers[1].weight, 2);
	assert_string_equal(c->pools[1].name, "local");
	assert_true(c->pools[1].direct);
	assert_int_equal(c->pools[1].nservers, 0);
	assert_string_equal(c->pools[2].name, "somepool");
	assert_int_equal(c->pools[2].balance, BAL_LEASTCONN);
	assert_string_equal(c->pools[2].servers[0].name, "[::1]:8080");
	assert_int_equal(c->pools[2].servers[0].weight, 1000);

	assert_int_equal(c->nrules, 3);
	assert_string_equal(c->rules[0].name, "admin-guard");
	assert_int_equal(c->rules[0].line, 22);
	assert_string_equal(c->rules[0].path_prefix, "/admin");
	assert_null(c->rules[0].host);
	assert_int_equal(c->rules[0].nclient_not_in, 1);
	assert_int_equal(c->rules[0].client_not_in[0].len, 96 + 8);
	assert_int_equal(c->rules[0].action, ACT_REJECT);
	assert_string_equal(c->rules[1].name, "by-host");
	assert_string_equal(c->rules[1].host, "some.host.com");
	assert_string_equal(c->rules[1].method, "GET");
	assert_int_equal(c->rules[1].nclient_in, 2);
	assert_int_equal(c->rules[1].client_in[1].len, 8);
	assert_int_equal(c->rules[1].action, ACT_POOL);
	assert_int_equal(c->rules[1].pool, 2); /* defined after the rule */
	assert_int_equal(c->rules[2].action, ACT_TUNNEL);
	assert_int_equal(c->default_pool, 0);
}

/* Every default of config.h, on a file that sets nothing but the required parts. */
static void test_defaults(void **state)
{
	struct fx *fx = *state;
	struct config *c = &fx->cfg;

	load_ok(fx, MINIMAL);
	assert_int_equal(c->relay, RELAY_AUTO);
	assert_string_equal(c->control, "/run/tunnelgate/control.sock");
	assert_string_equal(c->bpf_pin_dir, "/sys/fs/bpf/tunnelgate");
	assert_false(c->connect_ports_any);
	for (unsigned p = 0; p <= 65536; p++)
		assert_int_equal(config_port_allowed(c, p), p == 443);
	assert_int_equal(c->header_timeout_ms, 10000);
	assert_int_equal(c->connect_timeout_ms, 5000);
	assert_int_equal(c->idle_timeout_ms, 0);
	assert_int_equal(c->drain_timeout_ms, 30000);
	assert_int_equal(c->max_header_bytes, 16384);
	assert_int_equal(c->max_backlog_bytes, 4194304);
	assert_int_equal(c->pause, PAUSE_SOCKOPS);
	assert_int_equal(c->relay_sndbuf_bytes, 8388608);
	assert_int_equal(c->relay_rcvbuf_bytes, 0);
	assert_string_equal(c->access_log, "-");
	assert_false(c->access_log_json); /* access_log_format = text */
	assert_int_equal(c->resolver.len, 0); /* /etc/resolv.conf's servers */
	assert_int_equal(c->resolver_timeout_ms, 5000);
	assert_int_equal(c->resolver_max_queries, 256);
	assert_string_equal(c->user, "nobody");
	assert_int_equal(c->seccomp, SECCOMP_YES);
	assert_int_equal(c->metrics_listen.len, 0); /* off */
	assert_int_equal(c->upstream_idle_max, 64);
	assert_int_equal(c->upstream_idle_timeout_ms, 10000);
	assert_int_equal(c->nrules, 0);
	assert_int_equal(c->npools, 1);
	assert_int_equal(c->default_pool, 0); /* the only pool */
	assert_int_equal(c->pools[0].balance, BAL_ROUNDROBIN);
}

/* Numbers at their range limits load. */
static void test_number_limits(void **state)
{
	static const struct {
		const char *line;
		size_t off;
		uint64_t want;
	} cases[] = {
		{ "header_timeout_ms = 1", offsetof(struct config, header_timeout_ms), 1 },
		{ "header_timeout_ms = 86400000", offsetof(struct config, header_timeout_ms), 86400000 },
		{ "connect_timeout_ms = 1", offsetof(struct config, connect_timeout_ms), 1 },
		{ "idle_timeout_ms = 0", offsetof(struct config, idle_timeout_ms), 0 },
		{ "idle_timeout_ms = 86400000", offsetof(struct config, idle_timeout_ms), 86400000 },
		{ "drain_timeout_ms = 007", offsetof(struct config, drain_timeout_ms), 7 },
		{ "max_header_bytes = 1024", offsetof(struct config, max_header_bytes), 1024 },
		{ "max_header_bytes = 1048576", offsetof(struct config, max_header_bytes), 1048576 },
		{ "resolver_timeout_ms = 1", offsetof(struct config, resolver_timeout_ms), 1 },
		{ "resolver_max_queries = 1", offsetof(struct config, resolver_max_queries), 1 },
		{ "resolver_max_queries = 65536", offsetof(struct config, resolver_max_queries), 65536 },
		{ "upstream_idle_max = 0", offsetof(struct config, upstream_idle_max), 0 },
		{ "upstream_idle_max = 65536", offsetof(struct config, upstream_idle_max), 65536 },
		{ "upstream_idle_timeout_ms = 1", offsetof(struct config, upstream_idle_timeout_ms), 1 },
	};
	struct fx *fx = *state;
	char text[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[gateway]\nlisten = 127.0.0.1:1\n%s\n"
			 "[pool direct]\ndirect = yes\n", cases[i].line);
		load_ok(fx, text);
		assert_int_equal(*(unsigned *)((char *)&fx->cfg + cases[i].off), cases[i].want);
	}
	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:1\nmax_backlog_bytes = 1073741824\n"
		    "[pool direct]\ndirect = yes\n");
	assert_int_equal(fx->cfg.max_backlog_bytes, 1073741824);
	assert_false(fx->cfg.x_forwarded_for);
	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:1\nx_forwarded_for = yes\n"
		    "[pool direct]\ndirect = yes\n");
	assert_true(fx->cfg.x_forwarded_for);
	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:1\nresolver = [::1]:5353\n"
		    "[pool direct]\ndirect = yes\n");
	assert_int_equal(fx->cfg.resolver.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(fx->cfg.resolver.in6.sin6_port), 5353);
}

static void test_connect_ports(void **state)
{
	static const struct {
		const char *value;
		unsigned allowed[4];
		unsigned denied[4];
	} cases[] = {
		{ "443", { 443 }, { 442, 444, 80 } },
		{ "443, 8443", { 443, 8443 }, { 80, 8442, 8444 } },
		{ "443,8443,1-1024", { 1, 80, 1024, 8443 }, { 1025, 8442, 65535 } },
		{ "9000-9100 ,22", { 9000, 9050, 9100, 22 }, { 8999, 9101, 443 } },
		{ "65535", { 65535 }, { 65534, 443 } },
		{ "7-7", { 7 }, { 6, 8 } },
		{ "*", { 1, 443, 65535 }, { 0, 65536 } },
	};
	struct fx *fx = *state;
	char text[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[gateway]\nlisten = 127.0.0.1:1\nconnect_ports = %s\n"
			 "[pool direct]\ndirect = yes\n", cases[i].value);
		load_ok(fx, text);
		for (int j = 0; j < 4 && cases[i].allowed[j]; j++)
			if (!config_port_allowed(&fx->cfg, cases[i].allowed[j]))
				fail_msg("'%s': port %u denied", cases[i].value, cases[i].allowed[j]);
		for (int j = 0; j < 4 && (cases[i].denied[j] || j == 0); j++)
			if (config_port_allowed(&fx->cfg, cases[i].denied[j]))
				fail_msg("'%s': port %u allowed", cases[i].value, cases[i].denied[j]);
	}
}

static void test_listen_repeat_and_v6(void **state)
{
	struct fx *fx = *state;
	struct config *c = &fx->cfg;
	char buf[64];

	load_ok(fx, "[gateway]\n"
		    "listen = 127.0.0.1:3128\n"
		    "listen = [::1]:3128\n"
		    "  listen = 0.0.0.0:8080   ; indented, with a comment\n"
		    "listen = [::]:1\n"
		    "[pool direct]\ndirect = yes\n");
	assert_int_equal(c->nlisten, 4);
	assert_string_equal(sockaddr_fmt(&c->listen[0], buf, sizeof(buf)), "127.0.0.1:3128");
	assert_int_equal(c->listen[1].sa.sa_family, AF_INET6);
	assert_int_equal(c->listen[1].len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(c->listen[1].in6.sin6_port), 3128);
	assert_string_equal(sockaddr_fmt(&c->listen[1], buf, sizeof(buf)), "[::1]:3128");
	assert_string_equal(sockaddr_fmt(&c->listen[2], buf, sizeof(buf)), "0.0.0.0:8080");
	assert_string_equal(sockaddr_fmt(&c->listen[3], buf, sizeof(buf)), "[::]:1");
}

static void test_servers_and_weights(void **state)
{
	struct fx *fx = *state;
	struct pool *p;

	load_ok(fx, MINIMAL
		"[pool up]\n"
		"balance = source\n"
		"server = 127.0.0.1:8001\n"
		"server = 127.0.0.1:8002 weight=1\n"
		"server = 127.0.0.1:8003 weight=7\n"
		"server = 127.0.0.1:8004\tweight=1000 ; tab before the option\n"
		"[pool t]\nbalance = target\nserver = 127.0.0.2:1\n"
		"[route]\ndefault = up\n");
	assert_int_equal(fx->cfg.npools, 3);
	assert_int_equal(fx->cfg.default_pool, 1);
	p = &fx->cfg.pools[1];
	assert_int_equal(p->balance, BAL_SOURCE);
	assert_int_equal(p->nservers, 4);
	assert_int_equal(p->servers[0].weight, 1);
	assert_int_equal(p->servers[1].weight, 1);
	assert_int_equal(p->servers[2].weight, 7);
	assert_int_equal(p->servers[3].weight, 1000);
	assert_string_equal(p->servers[3].name, "127.0.0.1:8004");
	assert_int_equal(p->servers[3].state->active, 0);
	assert_int_equal(fx->cfg.pools[2].balance, BAL_TARGET);
}

/*
 * A reload loads a second config while the first still serves connections: a server
 * of the same pool and address in both shares one runtime state, so counts carry
 * over; another pool's server of the same address, or a new address, does not.
 */
static void test_server_state_shared(void **state)
{
	struct fx *fx = *state;
	struct config old;
	struct server_state *a, *b;

	load_ok(fx, MINIMAL "[pool up]\nbalance = leastconn\nserver = 127.0.0.1:8001\n"
		"server = 127.0.0.1:8002\n[route]\ndefault = up\n");
	old = fx->cfg; /* keep it loaded, as connections keep an old config */
	memset(&fx->cfg, 0, sizeof(fx->cfg));
	a = old.pools[1].servers[0].state;
	b = old.pools[1].servers[1].state;
	a->active = 3;
	a->picks = 7;
	load_ok(fx, MINIMAL "[pool up]\nserver = 127.0.0.1:8003\nserver = 127.0.0.1:8001 weight=2\n"
		"[pool other]\nserver = 127.0.0.1:8002\n[route]\ndefault = up\n");
	assert_ptr_equal(fx->cfg.pools[1].servers[1].state, a);
	assert_int_equal(fx->cfg.pools[1].servers[1].state->active, 3);
	assert_int_equal(fx->cfg.pools[1].servers[1].state->picks, 7);
	assert_int_equal(a->refs, 2);
	assert_ptr_not_equal(fx->cfg.pools[1].servers[0].state, a);
	assert_ptr_not_equal(fx->cfg.pools[2].servers[0].state, b); /* other pool */
	assert_int_equal(fx->cfg.pools[1].servers[0].state->active, 0);
	/* The old config goes with its last connection; the shared state stays. */
	config_free(&old);
	assert_int_equal(a->refs, 1);
	assert_int_equal(fx->cfg.pools[1].servers[1].state->active, 3);
}

/* The hardening keys: their defaults, values and limits. */
static void test_hardening_keys(void **state)
{
	struct fx *fx = *state;
	char host[64] = "", want[128];

	load_ok(fx, MINIMAL);
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(want, sizeof(want), "%s:3128", host[0] ? host : "tunnelgate");
	assert_string_equal(fx->cfg.via_name, want);
	assert_true(config_http_port_allowed(&fx->cfg, 80));
	assert_true(config_http_port_allowed(&fx->cfg, 8080));
	assert_false(config_http_port_allowed(&fx->cfg, 8081));
	assert_int_equal(fx->cfg.x_forwarded_for, XFF_NO);
	assert_int_equal(fx->cfg.body_timeout_ms, 30000);
	assert_int_equal(fx->cfg.body_min_rate, 500);
	assert_int_equal(fx->cfg.max_connections_per_client, 0);
	assert_true(config_max_connections(&fx->cfg) > 0);

	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:1\nvia_name = gw-2.example:3128\n"
		"http_ports = 81, 9000-9001\nx_forwarded_for = replace\nmax_connections = 7\n"
		"max_connections_per_client = 3\nbody_timeout_ms = 100\nbody_min_rate = 0\n"
		"[pool d]\ndirect = yes\n");
	assert_string_equal(fx->cfg.via_name, "gw-2.example:3128");
	assert_false(config_http_port_allowed(&fx->cfg, 80));
	assert_true(config_http_port_allowed(&fx->cfg, 9001));
	assert_int_equal(fx->cfg.x_forwarded_for, XFF_REPLACE);
	assert_int_equal(config_max_connections(&fx->cfg), 7);
	assert_int_equal(fx->cfg.max_connections_per_client, 3);
	assert_int_equal(fx->cfg.body_min_rate, 0);
	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:1\nx_forwarded_for = yes\n[pool d]\ndirect = yes\n");
	assert_int_equal(fx->cfg.x_forwarded_for, XFF_APPEND);

	assert_int_equal(load(fx, "[gateway]\nlisten = 127.0.0.1:1\nvia_name = two words\n"), -EINVAL);
	assert_non_null(strstr(fx->err, "via_name 'two words' must be one token"));
	assert_int_equal(load(fx, "[gateway]\nlisten = 127.0.0.1:1\nhttp_ports = 0\n"), -EINVAL);
	assert_non_null(strstr(fx->err, "http_ports '0': each item must be a port"));
}

static void test_other_values(void **state)
{
	struct fx *fx = *state;
	struct config *c = &fx->cfg;

	load_ok(fx, "[gateway]\nlisten = localhost:3128\nrelay = splice\npause = hold\n"
		    "relay_sndbuf_bytes = 0\nrelay_rcvbuf_bytes = 1073741824\n"
		    "control = /tmp/x.sock\nbpf_pin_dir = /sys/fs/bpf/x\naccess_log = /var/log/tg.log\n"
		    "access_log_format = json\n"
		    "user = tunnel-gate_1.x\nseccomp = log\nmetrics_listen = [::1]:9464\n"
		    "[pool d]\ndirect = yes\n[pool p]\ndirect = no\nserver = 127.0.0.1:1\n"
		    "[rule r]\nhost = [FD00::1]\npath_prefix = /a/./b//c/%7e\naction = pool p\n"
		    "[rule s]\nhost = 0X7F.1.\npath_prefix = /x/..;/A%252F\npath_case = exact\n"
		    "action = reject\n"
		    "[route]\ndefault = d\n");
	assert_true(c->listen[0].sa.sa_family == AF_INET || c->listen[0].sa.sa_family == AF_INET6);
	assert_int_equal(c->relay, RELAY_SPLICE);
	assert_int_equal(c->pause, PAUSE_HOLD);
	assert_int_equal(c->relay_sndbuf_bytes, 0);
	assert_int_equal(c->relay_rcvbuf_bytes, 1073741824);
	assert_string_equal(c->control, "/tmp/x.sock");
	assert_string_equal(c->bpf_pin_dir, "/sys/fs/bpf/x");
	assert_string_equal(c->access_log, "/var/log/tg.log");
	assert_true(c->access_log_json);
	assert_string_equal(c->user, "tunnel-gate_1.x");
	assert_int_equal(c->seccomp, SECCOMP_LOG);
	assert_int_equal(c->metrics_listen.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(c->metrics_listen.in6.sin6_port), 9464);
	assert_false(c->pools[1].direct);
	assert_string_equal(c->rules[0].host, "fd00::1");
	assert_string_equal(c->rules[0].path_prefix, "/a/b/c/~");
	assert_int_equal(c->rules[0].pool, 1);
	assert_false(c->rules[0].path_case_exact);
	/* stored in canonical form, as requests are compared */
	assert_string_equal(c->rules[1].host, "127.0.0.1");
	assert_string_equal(c->rules[1].path_prefix, "/A/");
	assert_true(c->rules[1].path_case_exact);

}

/* What editors write: a byte order mark, CRLF, indentation, both comment styles. */
static void test_syntax_variants(void **state)
{
	struct fx *fx = *state;

	load_ok(fx, "\xEF\xBB\xBF[gateway]\r\n"
		    "# a comment\r\n"
		    "\tlisten = 127.0.0.1:1 ; inline\r\n"
		    "\tlisten = 127.0.0.1:2\r\n"
		    "  [pool direct]   ; indented header\r\n"
		    "    direct = yes\r\n"
		    "  [rule r]\r\n"
		    "    host = a.com\r\n"
		    "    action = pool direct\r\n"
		    "\r\n");
	assert_int_equal(fx->cfg.nlisten, 2);
	assert_true(fx->cfg.pools[0].direct);
	assert_string_equal(fx->cfg.rules[0].host, "a.com");
	assert_int_equal(fx->cfg.rules[0].line, 7);

	/* line numbers still count comment and blank lines */
	assert_int_equal(load(fx, "; one\n\n# three\n[gateway]\nlisten = x\n"), -EINVAL);
	assert_non_null(strstr(fx->err, ":5: listen 'x' is not host:port"));
}

/* One row per error class: the file, the errno, the line and a piece of the message. */
static const struct {
	const char *text;
	int line; /* 0: the message has no line number */
	const char *msg;
} errors[] = {
	/* structure */
	{ "[gateway]\nlisten = 127.0.0.1:1\nlisen = 127.0.0.1:2\n", 3,
	  "unknown key 'lisen' in [gateway] (expected listen, relay, control, bpf_pin_dir, "
	  "connect_ports, header_timeout_ms, connect_timeout_ms, idle_timeout_ms, "
	  "drain_timeout_ms, max_header_bytes, max_backlog_bytes, pause, relay_sndbuf_bytes, "
	  "relay_rcvbuf_bytes, access_log, user, seccomp, x_forwarded_for" },
	{ MINIMAL "weight = 3\n", 5,
	  "unknown key 'weight' in [pool direct] (expected balance, server, direct, check, check_target, check_interval_ms, "
	  "check_timeout_ms, rise, fall, queue_max, queue_timeout_ms, send_proxy)" },
	{ MINIMAL "[gatway]\n", 5,
	  "unknown section [gatway] (expected [gateway], [pool NAME], [rule NAME] or [route])" },
	{ MINIMAL "[route]\n[rulez x]\naction = reject\n", 6, "unknown section [rulez]" },
	{ "listen = 127.0.0.1:1\n" MINIMAL, 1, "key 'listen' is outside any section" },
	{ MINIMAL "direct = no\n", 5, "'direct' is set twice in [pool direct] (first at line 4)" },
	{ "[gateway]\nrelay = auto\nlisten = 127.0.0.1:1\nrelay = splice\n[pool d]\ndirect = yes\n", 4,
	  "'relay' is set twice in [gateway] (first at line 2)" },
	{ MINIMAL "[gateway]\n", 5, "section [gateway] appears twice" },
	{ MINIMAL "[route]\ndefault = direct\n[route]\n", 7, "section [route] appears twice" },
	{ MINIMAL "[pool direct]\ndirect = yes\n", 5, "pool 'direct' is defined twice" },
	{ MINIMAL "[rule a]\naction = reject\n[rule a]\naction = tunnel\n", 7,
	  "rule 'a' is defined twice" },
	{ MINIMAL "[pool]\n", 5, "[pool] needs one name" },
	{ MINIMAL "[rule two words]\n", 5, "[rule two words] needs one name" },
	{ MINIMAL "[rule a/b]\n", 5, "needs one name" },
	{ MINIMAL "[route main]\n", 5, "[route] takes no name" },
	{ MINIMAL "this line has no equals sign\n", 5, "syntax error" },
	{ MINIMAL "[route\n", 5, "syntax error" },
	{ MINIMAL "relay\n[gatway]\n", 5, "syntax error" },
	{ MINIMAL "server =\n", 5, "'server' has no value" },
	{ MINIMAL "[rule r]\nhost = a.com\n", 5,
	  "rule 'r' has no action; add 'action = reject | pool NAME | tunnel [NAME]'" },
	{ MINIMAL "[rule r]\n\n\n", 5, "rule 'r' has no action" },
	{ MINIMAL "[rule r]\nhost = a.com\n[route]\n", 5, "rule 'r' has no action" },
	/* required parts */
	{ "[pool direct]\ndirect = yes\n", 0,
	  "no listen address; add 'listen = 127.0.0.1:3128' under [gateway]" },
	{ "[gateway]\nlisten = 127.0.0.1:1\n", 0, "no pool is defined" },
	{ MINIMAL "[pool other]\ndirect = yes\n", 0,
	  "2 pools and no [route] default; add [route] with 'default = POOL'" },
	{ MINIMAL "[pool b]\ndirect = yes\n[route]\n", 0, "2 pools and no [route] default" },
	/* values of [gateway] */
	{ "[gateway]\nlisten = 127.0.0.1\n", 2, "listen '127.0.0.1' is not host:port" },
	{ "[gateway]\nlisten = 127.0.0.1:1\nmetrics_listen = 127.0.0.1:0\n", 3,
	  "metrics_listen '127.0.0.1:0' is not host:port" },
	{ "[gateway]\nlisten = 127.0.0.1:0\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = 127.0.0.1:65536\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = 127.0.0.1:+80\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = 127.0.0.1:http\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = ::1:3128\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = [::1]3128\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = [127.0.0.1]:3128\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = :3128\n", 2, "is not host:port" },
	{ "[gateway]\nlisten = no-such-host.invalid:3128\n", 2, "cannot resolve" },
	{ "[gateway]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:1\n", 3,
	  "listen address 127.0.0.1:1 is given twice" },
	{ "[gateway]\nlisten=127.0.0.1:1\nlisten=127.0.0.1:2\nlisten=127.0.0.1:3\nlisten=127.0.0.1:4\n"
	  "listen=127.0.0.1:5\nlisten=127.0.0.1:6\nlisten=127.0.0.1:7\nlisten=127.0.0.1:8\n"
	  "listen=127.0.0.1:9\nlisten=127.0.0.1:10\nlisten=127.0.0.1:11\nlisten=127.0.0.1:12\n"
	  "listen=127.0.0.1:13\nlisten=127.0.0.1:14\nlisten=127.0.0.1:15\nlisten=127.0.0.1:16\n"
	  "listen=127.0.0.1:17\n", 18, "too many listen addresses (at most 16)" },
	{ MINIMAL "[gateway]\n", 5, "appears twice" },
	{ "[gateway]\nrelay = bpf\n", 2, "relay 'bpf' is not one of auto, sockmap, splice" },
	{ "[gateway]\nrelay = Auto\n", 2, "relay 'Auto' is not one of" },
	{ "[gateway]\nheader_timeout_ms = 0\n", 2,
	  "header_timeout_ms = '0' is not a whole decimal number in 1..86400000" },
	{ "[gateway]\nconnect_timeout_ms = 0\n", 2, "connect_timeout_ms = '0' is not" },
	{ "[gateway]\ndrain_timeout_ms = 0\n", 2, "drain_timeout_ms = '0' is not" },
	{ "[gateway]\nidle_timeout_ms = 86400001\n", 2, "in 0..86400000" },
	{ "[gateway]\nheader_timeout_ms = 10s\n", 2, "header_timeout_ms = '10s' is not" },
	{ "[gateway]\nheader_timeout_ms = -1\n", 2, "is not a whole decimal number" },
	{ "[gateway]\nheader_timeout_ms = +5\n", 2, "is not a whole decimal number" },
	{ "[gateway]\nheader_timeout_ms = 0x10\n", 2, "is not a whole decimal number" },
	{ "[gateway]\nheader_timeout_ms = 1 000\n", 2, "is not a whole decimal number" },
	{ "[gateway]\nheader_timeout_ms = 1.5\n", 2, "is not a whole decimal number" },
	{ "[gateway]\nheader_timeout_ms = 99999999999999999999999\n", 2, "is not a whole decimal" },
	{ "[gateway]\nmax_header_bytes = 1023\n", 2,
	  "max_header_bytes = '1023' is not a whole decimal number in 1024..1048576" },
	{ "[gateway]\nmax_header_bytes = 1048577\n", 2, "in 1024..1048576" },
	{ "[gateway]\nmax_backlog_bytes = 65535\n", 2, "in 65536..1073741824" },
	{ "[gateway]\npause = copy\n", 2, "pause 'copy' is not one of sockops, hold" },
	{ "[gateway]\npause = \n", 2, "'pause' has no value" },
	{ "[gateway]\nrelay_sndbuf_bytes = 1073741825\n", 2, "in 0..1073741824" },
	{ "[gateway]\nrelay_rcvbuf_bytes = -1\n", 2, "relay_rcvbuf_bytes = '-1' is not a whole" },
	{ "[gateway]\nmax_backlog_bytes = 1073741825\n", 2, "in 65536..1073741824" },
	{ "[gateway]\nx_forwarded_for = maybe\n", 2, "x_forwarded_for 'maybe' must be append, replace or no (yes means append)" },
	{ "[gateway]\nresolver = dns.example:53\n", 2,
	  "resolver 'dns.example:53' is not IP:port (e.g. 127.0.0.1:53 or [::1]:53; a host name" },
	{ "[gateway]\nresolver = 127.0.0.1\n", 2, "resolver '127.0.0.1' is not IP:port" },
	{ "[gateway]\nresolver = ::1:53\n", 2, "resolver '::1:53' is not IP:port" },
	{ "[gateway]\nresolver_max_queries = 0\n", 2, "resolver_max_queries = '0' is not a whole" },
	{ "[gateway]\nresolver_timeout_ms = 0\n", 2, "in 1..86400000" },
	{ "[gateway]\nupstream_idle_max = 65537\n", 2, "upstream_idle_max = '65537' is not a whole" },
	{ "[gateway]\nupstream_idle_timeout_ms = 0\n", 2, "in 1..86400000" },
	{ "[gateway]\nuser = -x\n", 2, "user '-x' is not a user name" },
	{ "[gateway]\nuser = a b\n", 2, "user 'a b' is not a user name" },
	{ "[gateway]\nseccomp = maybe\n", 2, "seccomp 'maybe' is not one of yes, no, log" },
	{ "[gateway]\naccess_log_format = JSON\n", 2,
	  "access_log_format 'JSON' is not one of text, json" },
	{ "[gateway]\nconnect_ports = 0\n", 2,
	  "connect_ports '0': each item must be a port 1-65535" },
	{ "[gateway]\nconnect_ports = 65536\n", 2, "connect_ports '65536'" },
	{ "[gateway]\nconnect_ports = 443,,80\n", 2, "connect_ports '443,,80'" },
	{ "[gateway]\nconnect_ports = 443,\n", 2, "connect_ports '443,'" },
	{ "[gateway]\nconnect_ports = 10-5\n", 2, "connect_ports '10-5'" },
	{ "[gateway]\nconnect_ports = 1-2-3\n", 2, "connect_ports '1-2-3'" },
	{ "[gateway]\nconnect_ports = -5\n", 2, "connect_ports '-5'" },
	{ "[gateway]\nconnect_ports = https\n", 2, "connect_ports 'https'" },
	{ "[gateway]\nconnect_ports = *, 443\n", 2, "connect_ports '*, 443'" },
	{ "[gateway]\ncontrol = /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	  2, "control is longer than 107 bytes" },
	/* pools */
	{ MINIMAL "[pool p]\n", 5,
	  "pool 'p' has no server; add 'server = host:port' or 'direct = yes'" },
	{ MINIMAL "[pool p]\nbalance = source\n[route]\ndefault = p\n", 5,
	  "pool 'p' has no server" },
	{ MINIMAL "[pool p]\ndirect = no\n", 5, "pool 'p' has no server" },
	{ MINIMAL "[pool p]\ndirect = yes\nserver = 127.0.0.1:1\n", 7,
	  "pool 'p' is direct = yes and cannot also have servers" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\ndirect = yes\n", 7,
	  "pool 'p' has servers and cannot also be direct = yes" },
	{ MINIMAL "[pool p]\ndirect = true\n", 6, "direct 'true' must be yes or no" },
	{ MINIMAL "[pool p]\nbalance = random\n", 6,
	  "balance 'random' is not one of roundrobin, leastconn, source, target" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1\n", 6, "server '127.0.0.1' is not host:port" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1 weight=0\n", 6,
	  "server weight '0' is not a whole number in 1..1000" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1 weight=1001\n", 6, "server weight '1001'" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1 weight=\n", 6, "server weight ''" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1 weight = 2\n", 6,
	  "server option 'weight' is not known" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1 backup\n", 6,
	  "server option 'backup' is not known (expected weight=N or maxconn=N)" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1 maxconn=-1\n", 6,
	  "server maxconn '-1' is not a whole number in 0..1000000" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\ncheck = tcp\n", 7,
	  "check 'tcp' is not one of none, connect, http_connect" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\ncheck = http_connect\n", 5,
	  "pool 'p': check = http_connect needs check_target = IP:port" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\ncheck_target = example.com:443\n", 7,
	  "check_target 'example.com:443' is not IP:port" },
	{ MINIMAL "[pool p]\ndirect = yes\ncheck = connect\n", 5,
	  "pool 'p' is direct = yes: it has no servers to check" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\ncheck_interval_ms = 10\n", 7,
	  "check_interval_ms = '10' is not a whole decimal number in 100..86400000" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\nrise = 0\n", 7, "rise = '0'" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\nfall = 101\n", 7, "fall = '101'" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\nsend_proxy = v3\n", 7,
	  "send_proxy 'v3' is not one of no, v1, v2" },
	{ "[gateway]\nworkers = 65\n", 2, "workers = '65' is not a whole decimal number in 0..64" },
	{ "[gateway]\ndeny = 10.0.0.0/33\n", 2, "deny: '10.0.0.0/33' is not an address or CIDR" },
	{ "[gateway]\nxdp_interfaces = averyveryverylongname0\n", 2,
	  "xdp_interfaces: 'averyveryverylongname0' is not an interface name" },
	{ "[gateway]\nlisten = 127.0.0.1:3128 proxy\n", 2,
	  "listen option 'proxy' is not known (the only one is accept_proxy)" },
	{ MINIMAL "[pool p]\nserver = 127.0.0.1:1\nserver = 127.0.0.1:1 weight=2\n", 7,
	  "server 127.0.0.1:1 is listed twice in pool 'p'" },
	/* rules */
	{ MINIMAL "[rule r]\naction = drop\n", 6,
	  "action 'drop' is not one of reject, pool NAME, tunnel, tunnel NAME" },
	{ MINIMAL "[rule r]\naction = tunnel nope\n", 5,
	  "rule 'r': pool 'nope' is not defined" },
	{ MINIMAL "[rule r]\naction = pool\n", 6, "action 'pool' is not one of" },
	{ MINIMAL "[rule r]\naction = pool a b\n", 6, "action 'pool a b': pool name must be" },
	{ MINIMAL "\n[rule x]\nhost = a.com\naction = pool nope\n", 6,
	  "rule 'x': pool 'nope' is not defined; add [pool nope] or fix the action" },
	{ MINIMAL "[rule a]\naction = reject\n[rule x]\naction = pool nope\n[pool later]\ndirect = yes\n"
	  "[route]\ndefault = direct\n", 7, "rule 'x': pool 'nope' is not defined" },
	{ MINIMAL "[route]\n\ndefault = nope\n", 7,
	  "[route] default: pool 'nope' is not defined" },
	{ MINIMAL "[rule r]\nclient_in = 10.0.0.0/33\naction = reject\n", 6,
	  "client_in: '10.0.0.0/33' is not an address or CIDR" },
	{ MINIMAL "[rule r]\nclient_not_in = 10.0.0.0/8,, ::1\naction = reject\n", 6,
	  "client_not_in: '' is not an address or CIDR" },
	{ MINIMAL "[rule r]\nclient_not_in = 10.0.0.0/8, fd00::/129\naction = reject\n", 6,
	  "client_not_in: 'fd00::/129'" },
	{ MINIMAL "[rule r]\nclient_in = example.com\naction = reject\n", 6,
	  "client_in: 'example.com'" },
	{ MINIMAL "[rule r]\nhost = a.com:443\naction = reject\n", 6,
	  "host 'a.com:443' must be a host name without a port" },
	{ MINIMAL "[rule r]\nhost = a.com/x\naction = reject\n", 6,
	  "host 'a.com/x' is not a host name" },
	{ MINIMAL "[rule r]\npath_prefix = admin\naction = reject\n", 6,
	  "path_prefix 'admin' must start with '/'" },
	{ MINIMAL "[rule r]\npath_prefix = /admin%zz\naction = reject\n", 6,
	  "path_prefix '/admin%zz' has no canonical form: percent-decoded" },
	{ MINIMAL "[rule r]\npath_prefix = /a%00\naction = reject\n", 6,
	  "path_prefix '/a%00' has no canonical form: it holds a NUL byte" },
	{ MINIMAL "[rule r]\npath_case = Exact\naction = reject\n", 6,
	  "path_case 'Exact' is not one of insensitive, exact" },
	{ MINIMAL "[rule r]\nhost = ..\naction = reject\n", 6,
	  "host '..' is empty once its trailing dots are removed" },
	{ MINIMAL "[rule r]\nmethod = GET /\naction = reject\n", 6,
	  "method 'GET /' is not an HTTP method" },
	{ MINIMAL "[rule r]\nhost = a.com\nhost = b.com\naction = reject\n", 7,
	  "'host' is set twice in [rule r] (first at line 6)" },
	{ MINIMAL "[route]\ndefault = a b\n", 6, "default 'a b' is not a pool name" },
	{ MINIMAL "[route]\ndefault = direct\nfallback = direct\n", 7,
	  "unknown key 'fallback' in [route] (expected default)" },
};

/* Health, queue and PROXY options, with their defaults; action = tunnel [POOL]. */
static void test_pool_options(void **state)
{
	struct fx *fx = *state;
	const struct pool *p, *d;

	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:3128\nlisten = [::1]:3128 accept_proxy\n"
		"[pool d]\ndirect = yes\nsend_proxy = v1\n"
		"[pool p]\nserver = 127.0.0.1:8001 maxconn=5 weight=3\nserver = 127.0.0.1:8002\n"
		"check = http_connect\ncheck_target = [::1]:443\ncheck_interval_ms = 250\n"
		"check_timeout_ms = 100\nrise = 4\nfall = 1\nqueue_max = 0\nqueue_timeout_ms = 7\n"
		"send_proxy = v2\n"
		"[rule a]\nhost = a.com\naction = tunnel\n"
		"[rule b]\nhost = b.com\naction = tunnel p\n"
		"[route]\ndefault = d\n");
	assert_false(fx->cfg.accept_proxy[0]);
	assert_true(fx->cfg.accept_proxy[1]);
	d = &fx->cfg.pools[0];
	p = &fx->cfg.pools[1];
	assert_int_equal(d->check, CHECK_NONE);
	assert_int_equal(d->check_interval_ms, 2000);
	assert_int_equal(d->check_timeout_ms, 1000);
	assert_int_equal(d->rise, 2);
	assert_int_equal(d->fall, 3);
	assert_int_equal(d->queue_max, 128);
	assert_int_equal(d->queue_timeout_ms, 5000);
	assert_int_equal(d->send_proxy, 1);
	assert_non_null(d->state);
	assert_int_equal(p->servers[0].maxconn, 5);
	assert_int_equal(p->servers[0].weight, 3);
	assert_int_equal(p->servers[1].maxconn, 0);
	assert_int_equal(p->check, CHECK_HTTP_CONNECT);
	assert_string_equal(p->check_target, "[::1]:443");
	assert_int_equal(p->check_interval_ms, 250);
	assert_int_equal(p->check_timeout_ms, 100);
	assert_int_equal(p->rise, 4);
	assert_int_equal(p->fall, 1);
	assert_int_equal(p->queue_max, 0);
	assert_int_equal(p->queue_timeout_ms, 7);
	assert_int_equal(p->send_proxy, 2);
	assert_int_equal(fx->cfg.rules[0].action, ACT_TUNNEL);
	assert_int_equal(fx->cfg.rules[0].pool, -1);
	assert_int_equal(fx->cfg.rules[1].action, ACT_TUNNEL);
	assert_int_equal(fx->cfg.rules[1].pool, 1);
}

/* workers and the XDP guard's keys. */
static void test_worker_and_guard_keys(void **state)
{
	struct fx *fx = *state;

	load_ok(fx, "[gateway]\nlisten = 127.0.0.1:3128\nworkers = 3\n"
		"xdp_interfaces = eth0, veth-a\tbond0.12\ndeny = 10.0.0.0/8, 2001:db8::/32\n"
		"syn_rate = 100\nsyn_burst = 7\n[pool direct]\ndirect = yes\n");
	assert_int_equal(fx->cfg.workers, 3);
	assert_int_equal(config_workers(&fx->cfg), 3);
	assert_int_equal(fx->cfg.nxdp_interfaces, 3);
	assert_string_equal(fx->cfg.xdp_interfaces[0], "eth0");
	assert_string_equal(fx->cfg.xdp_interfaces[1], "veth-a");
	assert_string_equal(fx->cfg.xdp_interfaces[2], "bond0.12");
	assert_int_equal(fx->cfg.ndeny, 2);
	assert_int_equal(fx->cfg.deny[0].len, 96 + 8);
	assert_int_equal(fx->cfg.deny[1].len, 32);
	assert_int_equal(fx->cfg.syn_rate, 100);
	assert_int_equal(fx->cfg.syn_burst, 7);
	config_free(&fx->cfg);
	load_ok(fx, MINIMAL);
	assert_int_equal(fx->cfg.nxdp_interfaces, 0);
	assert_true(config_workers(&fx->cfg) >= 1); /* the CPUs we may run on */
}

static void test_errors(void **state)
{
	struct fx *fx = *state;
	char prefix[128];

	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		int r = load(fx, errors[i].text);

		if (errors[i].line)
			snprintf(prefix, sizeof(prefix), "%s:%d: ", fx->path, errors[i].line);
		else
			snprintf(prefix, sizeof(prefix), "%s: ", fx->path);
		if (r != -EINVAL || strncmp(fx->err, prefix, strlen(prefix)) ||
		    !strstr(fx->err, errors[i].msg) || strchr(fx->err, '\n'))
			fail_msg("case %zu: got %d '%s', want -EINVAL '%s...%s'", i, r, fx->err, prefix,
				 errors[i].msg);
		/* a failed load leaves nothing behind */
		assert_null(fx->cfg.pools);
		assert_null(fx->cfg.rules);
		assert_null(fx->cfg.path);
	}
}

/* inih's line buffer is 200 bytes: a longer line is an error, not two lines. */
static void test_long_line(void **state)
{
	struct fx *fx = *state;
	char text[1024], want[128];

	snprintf(text, sizeof(text), MINIMAL "[rule r]\naction = reject\nclient_in = %0*d\n", 190, 1);
	assert_int_equal(load(fx, text), -EINVAL);
	snprintf(want, sizeof(want), "%s:7: line is longer than 198 characters", fx->path);
	assert_string_equal(fx->err, strcat(want, "; shorten it"));

	/* 198 characters and the newline still fit */
	snprintf(text, sizeof(text), MINIMAL "; %0*d\n", 196, 1);
	load_ok(fx, text);
}

static void test_missing_file(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(config_load("/nonexistent/tunnelgate.conf", &fx->cfg, fx->err,
				     sizeof(fx->err)), -ENOENT);
	assert_string_equal(fx->err,
			    "cannot open /nonexistent/tunnelgate.conf: No such file or directory");
	assert_int_equal(config_load("/tmp", &fx->cfg, fx->err, sizeof(fx->err)), -EIO);
	assert_string_equal(fx->err, "/tmp: cannot read: Is a directory");
}

/* The message is cut to the caller's buffer, still NUL-terminated. */
static void test_small_err_buffer(void **state)
{
	struct fx *fx = *state;
	char small[8];

	load(fx, "x");
	assert_int_equal(config_load(fx->path, &fx->cfg, small, sizeof(small)), -EINVAL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(config_load(fx->path, &fx->cfg, NULL, 0), -EINVAL);
}

static void test_parse_hostport(void **state)
{
	static const struct {
		const char *in;
		int ret;
		const char *fmt;
	} cases[] = {
		{ "127.0.0.1:3128", 0, "127.0.0.1:3128" },
		{ "[::1]:3128", 0, "[::1]:3128" },
		{ "[2001:db8::1]:65535", 0, "[2001:db8::1]:65535" },
		{ "10.1.2.3:1", 0, "10.1.2.3:1" },
		{ "127.0.0.1:03128", 0, "127.0.0.1:3128" },
		{ "127.0.0.1", -EINVAL, NULL },
		{ "127.0.0.1:", -EINVAL, NULL },
		{ "127.0.0.1:0", -EINVAL, NULL },
		{ "127.0.0.1:65536", -EINVAL, NULL },
		{ "127.0.0.1:80x", -EINVAL, NULL },
		{ ":80", -EINVAL, NULL },
		{ "::1:80", -EINVAL, NULL },
		{ "[::1]", -EINVAL, NULL },
		{ "[::1:80", -EINVAL, NULL },
		{ "[nothost]:80", -EINVAL, NULL },
		{ "", -EINVAL, NULL },
		{ "no-such-host.invalid:80", -ENOENT, NULL },
	};
	struct sockaddr_any a;
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = parse_hostport(cases[i].in, &a);

		if (r != cases[i].ret)
			fail_msg("'%s': got %d, want %d", cases[i].in, r, cases[i].ret);
		if (cases[i].fmt)
			assert_string_equal(sockaddr_fmt(&a, buf, sizeof(buf)), cases[i].fmt);
	}
	assert_int_equal(parse_hostport("localhost:3128", &a), 0);
	assert_true(a.sa.sa_family == AF_INET || a.sa.sa_family == AF_INET6);
	assert_int_equal(ntohs(a.in.sin_port), 3128);
	/* truncation keeps a terminated string */
	parse_hostport("127.0.0.1:3128", &a);
	assert_string_equal(sockaddr_fmt(&a, buf, 6), "127.0");
	memset(&a, 0, sizeof(a));
	assert_string_equal(sockaddr_fmt(&a, buf, sizeof(buf)), "?");
}

static void test_free_zeroed(void **state)
{
	struct config c;

	(void)state;
	memset(&c, 0, sizeof(c));
	config_free(&c);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_number_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_ports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_repeat_and_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_servers_and_weights, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_state_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hardening_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_variants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_and_guard_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_err_buffer, setup, teardown),
		cmocka_unit_test(test_parse_hostport),
		cmocka_unit_test(test_free_zeroed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
