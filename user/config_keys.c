// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The keys of each config section: one setter per key that checks the value and
 * stores it in struct config, the key tables that config.c looks keys up in, and the
 * [rule] conditions (host, path, method, client address lists) in their stored form.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config_keys.h"
#include "rules.h"

#define TIMEOUT_MAX 86400000ULL /* one day, in ms */

int cfg_fail_at(struct parser *ps, int err, int line, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (ps->err)
		return ps->err;
	ps->err = err;
	ps->err_line = line;
	if (!ps->errlen)
		return err;
	if (line)
		n = snprintf(ps->errbuf, ps->errlen, "%s:%d: ", ps->path, line);
	else
		n = snprintf(ps->errbuf, ps->errlen, "%s: ", ps->path);
	if (n >= 0 && (size_t)n < ps->errlen) {
		va_start(ap, fmt);
		vsnprintf(ps->errbuf + n, ps->errlen - n, fmt, ap);
		va_end(ap);
	}
	return err;
}

char *cfg_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

bool cfg_valid_name(const char *s)
{
	if (!*s || strlen(s) >= CFG_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	return true;
}

/* ---- [gateway] ---- */

/* "host:port [accept_proxy]" */
static int set_listen(struct parser *ps, const struct key_def *k, const char *v)
{
	struct config *cfg = ps->cfg;
	struct sockaddr_any a;
	char name[CFG_NAME_MAX], addr[300];
	const char *opt = v + strcspn(v, " \t");
	int err;

	(void)k;
	if (cfg->nlisten == CFG_MAX_LISTEN)
		return fail(ps, "too many listen addresses (at most %d); remove some", CFG_MAX_LISTEN);
	snprintf(addr, sizeof(addr), "%.*s", (int)(opt - v), v);
	opt += strspn(opt, " \t");
	if (*opt && strcmp(opt, "accept_proxy"))
		return fail(ps, "listen option '%s' is not known (the only one is accept_proxy)", opt);
	cfg->accept_proxy[cfg->nlisten] = *opt != '\0';
	v = addr;
	err = parse_hostport(v, &a);
	if (err == -ENOENT)
		return fail(ps, "listen '%s': cannot resolve the host name; use an IP address", v);
	if (err)
		return fail(ps, "listen '%s' is not host:port (e.g. 127.0.0.1:3128 or [::1]:3128, port 1-65535)",
			    v);
	for (unsigned i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].len == a.len && !memcmp(&cfg->listen[i].ss, &a.ss, a.len))
			return fail(ps, "listen address %s is given twice; remove one",
				    sockaddr_fmt(&a, name, sizeof(name)));
	cfg->listen[cfg->nlisten++] = a;
	return 0;
}

static int set_metrics_listen(struct parser *ps, const struct key_def *k, const char *v)
{
	int err = parse_hostport(v, &ps->cfg->metrics_listen);

	(void)k;
	if (err == -ENOENT)
		return fail(ps, "metrics_listen '%s': cannot resolve the host name; use an IP address", v);
	if (err)
		return fail(ps, "metrics_listen '%s' is not host:port (e.g. 127.0.0.1:9464 or [::1]:9464, port 1-65535)",
			    v);
	return 0;
}

static int set_relay(struct parser *ps, const struct key_def *k, const char *v)
{
	static const char *const names[] = { "auto", "sockmap", "splice" };

	(void)k;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(v, names[i])) {
			ps->cfg->relay = (enum relay_mode)i;
			return 0;
		}
	}
	return fail(ps, "relay '%s' is not one of auto, sockmap, splice", v);
}

static int set_pause(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!strcmp(v, "sockops"))
		ps->cfg->pause = PAUSE_SOCKOPS;
	else if (!strcmp(v, "hold"))
		ps->cfg->pause = PAUSE_HOLD;
	else
		return fail(ps, "pause '%s' is not one of sockops, hold", v);
	return 0;
}

static int set_access_log_format(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!strcmp(v, "text"))
		ps->cfg->access_log_json = false;
	else if (!strcmp(v, "json"))
		ps->cfg->access_log_json = true;
	else
		return fail(ps, "access_log_format '%s' is not one of text, json", v);
	return 0;
}

/* A string option stored in a fixed buffer of struct config. */
static int set_string(struct parser *ps, const struct key_def *k, const char *v)
{
	if (strlen(v) >= k->size)
		return fail(ps, "%s is longer than %zu bytes; use a shorter path", k->name, k->size - 1);
	strcpy((char *)ps->cfg + k->off, v);
	return 0;
}

/* A number option of struct config (unsigned or uint64_t) within [k->min, k->max]. */
static int set_number(struct parser *ps, const struct key_def *k, const char *v)
{
	unsigned long long n;
	/* [gateway] keys are fields of struct config, [pool] keys of the current pool. */
	void *field = (ps->def && ps->def->sec == SEC_POOL ? (char *)cur_pool(ps) : (char *)ps->cfg) +
		      k->off;

	if (parse_ull(v, &n) || n < k->min || n > k->max)
		return fail(ps, "%s = '%s' is not a whole decimal number in %llu..%llu", k->name, v,
			    k->min, k->max);
	if (k->size == sizeof(uint64_t))
		*(uint64_t *)field = n;
	else
		*(unsigned *)field = n;
	return 0;
}

/* A port list ("443, 8443, 9000-9100" or "*") into @any and the bit set @bits. */
static int set_port_list(struct parser *ps, const struct key_def *k, const char *v, bool *any,
			 uint8_t bits[65536 / 8])
{
	char *copy, *item, *next;
	int err = 0;

	memset(bits, 0, 65536 / 8);
	*any = !strcmp(v, "*");
	if (*any)
		return 0;
	copy = strdup(v);
	if (!copy)
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	/* strtok_r would skip empty items ("443,,80"): a typo we want to report. */
	for (item = copy; item; item = next) {
		char *comma = strchr(item, ',');
		unsigned lo, hi;
		char *dash;

		next = comma ? comma + 1 : NULL;
		if (comma)
			*comma = '\0';
		item = cfg_trim(item);
		dash = strchr(item, '-');
		if (dash)
			*dash = '\0';
		if (parse_port(cfg_trim(item), &lo) || (dash && parse_port(cfg_trim(dash + 1), &hi)) ||
		    (dash && hi < lo)) {
			err = fail(ps, "%s '%s': each item must be a port 1-65535 or a range "
				   "LOW-HIGH, comma separated (e.g. 443, 8443, 9000-9100), or '*'",
				   k->name, v);
			break;
		}
		if (!dash)
			hi = lo;
		for (unsigned p = lo; p <= hi; p++)
			bits[p / 8] |= 1u << (p % 8);
	}
	free(copy);
	return err;
}

static int set_connect_ports(struct parser *ps, const struct key_def *k, const char *v)
{
	return set_port_list(ps, k, v, &ps->cfg->connect_ports_any, ps->cfg->connect_ports);
}

static int set_http_ports(struct parser *ps, const struct key_def *k, const char *v)
{
	return set_port_list(ps, k, v, &ps->cfg->http_ports_any, ps->cfg->http_ports);
}

/* A user name as useradd takes it; looked up at start-up, where a missing one fails. */
static int set_user(struct parser *ps, const struct key_def *k, const char *v)
{
	size_t n = strlen(v);

	(void)k;
	if (!n || n >= sizeof(ps->cfg->user) || v[0] == '-' ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return fail(ps, "user '%s' is not a user name (letters, digits, '.', '_', '-'; at most "
			    "%zu; e.g. nobody, or root to keep all privileges)", v,
			    sizeof(ps->cfg->user) - 1);
	strcpy(ps->cfg->user, v);
	return 0;
}

static int set_seccomp(struct parser *ps, const struct key_def *k, const char *v)
{
	static const char *const names[] = { "yes", "no", "log" };

	(void)k;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(v, names[i])) {
			ps->cfg->seccomp = (enum seccomp_mode)i;
			return 0;
		}
	}
	return fail(ps, "seccomp '%s' is not one of yes, no, log", v);
}

/* ---- [pool NAME] ---- */

/* Names of enum balance, in its order. */
const char *const cfg_balance_names[BAL_TARGET + 1] = {
	"roundrobin", "leastconn", "source", "target"
};

static int set_balance(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	for (unsigned i = 0; i < sizeof(cfg_balance_names) / sizeof(cfg_balance_names[0]); i++) {
		if (!strcmp(v, cfg_balance_names[i])) {
			cur_pool(ps)->balance = (enum balance)i;
			return 0;
		}
	}
	return fail(ps, "balance '%s' is not one of roundrobin, leastconn, source, target", v);
}

/* One "weight=N" or "maxconn=N" of a server line. */
static int server_option(struct parser *ps, struct server *s, const char *tok)
{
	unsigned long long n;

	if (!strncmp(tok, "weight=", 7)) {
		if (parse_ull(tok + 7, &n) || n < 1 || n > 1000)
			return fail(ps, "server weight '%s' is not a whole number in 1..1000", tok + 7);
		s->weight = n;
		return 0;
	}
	if (!strncmp(tok, "maxconn=", 8)) {
		if (parse_ull(tok + 8, &n) || n > 1000000)
			return fail(ps, "server maxconn '%s' is not a whole number in 0..1000000 (0: no limit)",
				    tok + 8);
		s->maxconn = n;
		return 0;
	}
	return fail(ps, "server option '%s' is not known (expected weight=N or maxconn=N)", tok);
}

/* "host:port [weight=N] [maxconn=N]" */
static int set_server(struct parser *ps, const struct key_def *k, const char *v)
{
	struct pool *p = cur_pool(ps);
	struct server *s, *servers;
	char *copy, *tok, *save = NULL;
	int err;

	(void)k;
	if (p->direct)
		return fail(ps, "pool '%s' is direct = yes and cannot also have servers; remove one of them",
			    p->name);
	servers = realloc(p->servers, (p->nservers + 1) * sizeof(*servers));
	if (!servers)
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	p->servers = servers;
	s = &servers[p->nservers];
	memset(s, 0, sizeof(*s));
	s->weight = 1;

	copy = strdup(v);
	if (!copy)
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	tok = strtok_r(copy, " \t", &save);
	err = parse_hostport(tok, &s->addr);
	if (err == -ENOENT)
		err = fail(ps, "server '%s': cannot resolve the host name", tok);
	else if (err)
		err = fail(ps, "server '%s' is not host:port (e.g. 127.0.0.1:8888 or [::1]:8888, port 1-65535)",
			   tok);
	while (!err && (tok = strtok_r(NULL, " \t", &save)))
		err = server_option(ps, s, tok);
	free(copy);
	if (err)
		return err;
	sockaddr_fmt(&s->addr, s->name, sizeof(s->name));
	for (unsigned i = 0; i < p->nservers; i++)
		if (!strcmp(p->servers[i].name, s->name))
			return fail(ps, "server %s is listed twice in pool '%s'; use weight=N instead",
				    s->name, p->name);
	p->nservers++;
	return 0;
}

/* The gateway's pseudonym in Via: one token, as RFC 9110 7.6.3's received-by. */
static int set_via_name(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!*v || strlen(v) >= sizeof(ps->cfg->via_name) ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		      "!#$%&'*+-.^_`|~:[]") != strlen(v))
		return fail(ps, "via_name '%s' must be one token of at most %zu letters, digits and "
			    "-._:~ (e.g. gw1.example:3128)", v, sizeof(ps->cfg->via_name) - 1);
	strcpy(ps->cfg->via_name, v);
	return 0;
}

/* The DNS server as IP:port: a host name here would need a resolver to find the resolver. */
static int set_resolver(struct parser *ps, const struct key_def *k, const char *v)
{
	const char *colon = strrchr(v, ':');
	char host[INET_ADDRSTRLEN];
	struct in_addr a4;
	bool literal = v[0] == '['; /* parse_hostport() takes only IPv6 literals in brackets */

	(void)k;
	if (!literal && colon && (size_t)(colon - v) < sizeof(host)) {
		memcpy(host, v, colon - v);
		host[colon - v] = '\0';
		literal = inet_pton(AF_INET, host, &a4) == 1;
	}
	if (!literal || parse_hostport(v, &ps->cfg->resolver))
		return fail(ps, "resolver '%s' is not IP:port (e.g. 127.0.0.1:53 or [::1]:53; a host name cannot be used here)",
			    v);
	return 0;
}

static int set_x_forwarded_for(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!strcmp(v, "append") || !strcmp(v, "yes"))
		ps->cfg->x_forwarded_for = XFF_APPEND;
	else if (!strcmp(v, "replace"))
		ps->cfg->x_forwarded_for = XFF_REPLACE;
	else if (!strcmp(v, "no"))
		ps->cfg->x_forwarded_for = XFF_NO;
	else
		return fail(ps, "x_forwarded_for '%s' must be append, replace or no (yes means append)", v);
	return 0;
}

static int set_direct(struct parser *ps, const struct key_def *k, const char *v)
{
	struct pool *p = cur_pool(ps);

	(void)k;
	if (strcmp(v, "yes") && strcmp(v, "no"))
		return fail(ps, "direct '%s' must be yes or no", v);
	p->direct = !strcmp(v, "yes");
	if (p->direct && p->nservers)
		return fail(ps, "pool '%s' has servers and cannot also be direct = yes; remove one of them",
			    p->name);
	return 0;
}

static int set_check(struct parser *ps, const struct key_def *k, const char *v)
{
	static const char *const names[] = { "none", "connect", "http_connect" };

	(void)k;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(v, names[i])) {
			cur_pool(ps)->check = (enum check_kind)i;
			return 0;
		}
	}
	return fail(ps, "check '%s' is not one of none, connect, http_connect", v);
}

/* The CONNECT target of check = http_connect: an address, so a check sends no DNS query. */
static int set_check_target(struct parser *ps, const struct key_def *k, const char *v)
{
	struct sockaddr_any a;

	(void)k;
	if (strlen(v) >= sizeof(cur_pool(ps)->check_target) || parse_hostport(v, &a) ||
	    (v[0] != '[' && !isdigit((unsigned char)v[0])))
		return fail(ps, "check_target '%s' is not IP:port (e.g. 192.0.2.10:443 or [2001:db8::1]:443)",
			    v);
	strcpy(cur_pool(ps)->check_target, v);
	return 0;
}

static int set_send_proxy(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!strcmp(v, "no"))
		cur_pool(ps)->send_proxy = 0;
	else if (!strcmp(v, "v1"))
		cur_pool(ps)->send_proxy = 1;
	else if (!strcmp(v, "v2"))
		cur_pool(ps)->send_proxy = 2;
	else
		return fail(ps, "send_proxy '%s' is not one of no, v1, v2", v);
	return 0;
}

/* ---- [rule NAME] ---- */

static int set_host(struct parser *ps, const struct key_def *k, const char *v)
{
	struct in6_addr a6;
	char host[256], canon[256];
	size_t n = strlen(v);

	(void)k;
	/* Requests carry IPv6 hosts without brackets: store them that way. */
	if (v[0] == '[' && n > 2 && v[n - 1] == ']' && n - 2 < sizeof(host)) {
		memcpy(host, v + 1, n - 2);
		host[n - 2] = '\0';
	} else if (n < sizeof(host)) {
		strcpy(host, v);
	} else {
		return fail(ps, "host is longer than %zu bytes", sizeof(host) - 1);
	}
	if (strchr(host, ':') && inet_pton(AF_INET6, host, &a6) != 1)
		return fail(ps, "host '%s' must be a host name without a port (ports are ignored when matching)",
			    v);
	for (char *c = host; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("-._:", *c))
			return fail(ps, "host '%s' is not a host name or IP address", v);
	/* Compared with request hosts in canonical form: 0x7f.1 is 127.0.0.1, Ab.com. ab.com */
	if (host_canonical(host, strlen(host), canon, sizeof(canon)) <= 0)
		return fail(ps, "host '%s' is empty once its trailing dots are removed", v);
	cur_rule(ps)->host = strdup(canon);
	if (!cur_rule(ps)->host)
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	return 0;
}

static int set_path_prefix(struct parser *ps, const struct key_def *k, const char *v)
{
	size_t n = strlen(v);
	char *norm;
	int err;

	(void)k;
	if (v[0] != '/')
		return fail(ps, "path_prefix '%s' must start with '/'", v);
	norm = malloc(n + 2);
	if (!norm)
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	/* Stored in canonical form, as request paths are compared in that form. */
	err = path_canonical(v, n, norm, n + 2);
	if (err < 0) {
		free(norm);
		return fail(ps, "path_prefix '%s' has no canonical form: %s", v, path_strerror(err));
	}
	cur_rule(ps)->path_prefix = norm;
	return 0;
}

static int set_path_case(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (strcmp(v, "insensitive") && strcmp(v, "exact"))
		return fail(ps, "path_case '%s' is not one of insensitive, exact", v);
	cur_rule(ps)->path_case_exact = !strcmp(v, "exact");
	return 0;
}

static int set_method(struct parser *ps, const struct key_def *k, const char *v)
{
	char *m;

	(void)k;
	for (const char *c = v; *c; c++)
		if (!isalpha((unsigned char)*c) && *c != '-' && *c != '_')
			return fail(ps, "method '%s' is not an HTTP method name (e.g. GET, CONNECT)", v);
	m = strdup(v);
	if (!m)
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	for (char *c = m; *c; c++)
		*c = toupper((unsigned char)*c);
	cur_rule(ps)->method = m;
	return 0;
}

/* A comma list of CIDRs into a malloc'd array. */
static int parse_cidr_list(struct parser *ps, const struct key_def *k, const char *v,
			   struct cidr **out, unsigned *nout)
{
	unsigned n = 1, i = 0;
	char *copy, *item, *next;
	struct cidr *list;
	int err = 0;

	for (const char *c = v; *c; c++)
		n += *c == ',';
	list = calloc(n, sizeof(*list));
	copy = strdup(v);
	if (!list || !copy) {
		free(list);
		free(copy);
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	}
	for (item = copy; item; item = next) {
		char *comma = strchr(item, ',');

		next = comma ? comma + 1 : NULL;
		if (comma)
			*comma = '\0';
		item = cfg_trim(item);
		if (cidr_parse(item, &list[i++])) {
			err = fail(ps, "%s: '%s' is not an address or CIDR (e.g. 10.0.0.0/8, fd00::/8), "
				   "comma separated", k->name, item);
			break;
		}
	}
	free(copy);
	if (err) {
		free(list);
		return err;
	}
	*out = list;
	*nout = n;
	return 0;
}

/* [gateway] deny: sources the XDP guard drops. Given twice, the second list wins. */
static int set_deny(struct parser *ps, const struct key_def *k, const char *v)
{
	free(ps->cfg->deny);
	ps->cfg->deny = NULL;
	ps->cfg->ndeny = 0;
	return parse_cidr_list(ps, k, v, &ps->cfg->deny, &ps->cfg->ndeny);
}

/* [gateway] xdp_interfaces: a comma list of interface names. */
static int set_xdp_interfaces(struct parser *ps, const struct key_def *k, const char *v)
{
	struct config *cfg = ps->cfg;
	char copy[CFG_MAX_XDP_IFS * 17], *item, *save = NULL;

	(void)k;
	if (strlen(v) >= sizeof(copy))
		return fail(ps, "xdp_interfaces is too long (at most %d names)", CFG_MAX_XDP_IFS);
	strcpy(copy, v);
	cfg->nxdp_interfaces = 0;
	for (item = strtok_r(copy, ", \t", &save); item; item = strtok_r(NULL, ", \t", &save)) {
		if (cfg->nxdp_interfaces == CFG_MAX_XDP_IFS)
			return fail(ps, "xdp_interfaces: at most %d interfaces", CFG_MAX_XDP_IFS);
		if (strlen(item) >= sizeof(cfg->xdp_interfaces[0]) || strchr(item, '/'))
			return fail(ps, "xdp_interfaces: '%s' is not an interface name (at most 15 characters, see ip link)",
				    item);
		strcpy(cfg->xdp_interfaces[cfg->nxdp_interfaces++], item);
	}
	return 0;
}

static int set_client_in(struct parser *ps, const struct key_def *k, const char *v)
{
	struct rule *r = cur_rule(ps);

	return parse_cidr_list(ps, k, v, &r->client_in, &r->nclient_in);
}

static int set_client_not_in(struct parser *ps, const struct key_def *k, const char *v)
{
	struct rule *r = cur_rule(ps);

	return parse_cidr_list(ps, k, v, &r->client_not_in, &r->nclient_not_in);
}

static int set_dest_in(struct parser *ps, const struct key_def *k, const char *v)
{
	struct rule *r = cur_rule(ps);

	ps->cfg->rules_need_dest = true;
	return parse_cidr_list(ps, k, v, &r->dest_in, &r->ndest_in);
}

static int set_dest_not_in(struct parser *ps, const struct key_def *k, const char *v)
{
	struct rule *r = cur_rule(ps);

	ps->cfg->rules_need_dest = true;
	return parse_cidr_list(ps, k, v, &r->dest_not_in, &r->ndest_not_in);
}

static int set_action(struct parser *ps, const struct key_def *k, const char *v)
{
	struct rule *r = cur_rule(ps);
	const char *name;

	(void)k;
	if (!strcmp(v, "reject")) {
		r->action = ACT_REJECT;
		return 0;
	}
	if (!strcmp(v, "tunnel")) {
		r->action = ACT_TUNNEL;
		r->pool = -1; /* the default pool */
		return 0;
	}
	if ((!strncmp(v, "pool", 4) && isspace((unsigned char)v[4])) ||
	    (!strncmp(v, "tunnel", 6) && isspace((unsigned char)v[6]))) {
		for (name = v + 4 + 2 * (v[0] == 't'); isspace((unsigned char)*name); name++)
			;
		if (!cfg_valid_name(name))
			return fail(ps, "action '%s': pool name must be letters, digits, '-', '_' or '.'", v);
		r->action = v[0] == 't' ? ACT_TUNNEL : ACT_POOL;
		/* Pools may be defined further down: resolved once the whole file is read. */
		strcpy(ps->rule_pool[ps->cfg->nrules - 1], name);
		return 0;
	}
	return fail(ps, "action '%s' is not one of reject, pool NAME, tunnel, tunnel NAME", v);
}

/* ---- [route] ---- */

static int set_default(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!cfg_valid_name(v))
		return fail(ps, "default '%s' is not a pool name", v);
	strcpy(ps->default_pool, v);
	ps->default_line = ps->lineno;
	return 0;
}

#define CFG_FIELD(f) .off = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define STRING(f) .name = #f, .set = set_string, CFG_FIELD(f)
#define NUMBER(f, lo, hi) .name = #f, .set = set_number, CFG_FIELD(f), .min = lo, .max = hi
#define POOL_NUMBER(f, lo, hi) .name = #f, .set = set_number, .off = offsetof(struct pool, f), \
	.size = sizeof(((struct pool *)0)->f), .min = lo, .max = hi

static const struct key_def gateway_keys[] = {
	{ .name = "listen", .set = set_listen, .repeat = true },
	{ .name = "relay", .set = set_relay },
	{ STRING(control) },
	{ STRING(bpf_pin_dir) },
	{ .name = "connect_ports", .set = set_connect_ports },
	{ NUMBER(header_timeout_ms, 1, TIMEOUT_MAX) },
	{ NUMBER(connect_timeout_ms, 1, TIMEOUT_MAX) },
	{ NUMBER(idle_timeout_ms, 0, TIMEOUT_MAX) },
	{ NUMBER(drain_timeout_ms, 1, TIMEOUT_MAX) },
	{ NUMBER(max_header_bytes, 1024, 1048576) },
	{ NUMBER(max_backlog_bytes, 65536, 1073741824) },
	{ .name = "pause", .set = set_pause },
	{ NUMBER(relay_sndbuf_bytes, 0, 1073741824) },
	{ NUMBER(relay_rcvbuf_bytes, 0, 1073741824) },
	{ STRING(access_log) },
	{ .name = "user", .set = set_user },
	{ .name = "seccomp", .set = set_seccomp },
	{ .name = "x_forwarded_for", .set = set_x_forwarded_for },
	{ .name = "resolver", .set = set_resolver },
	{ NUMBER(resolver_timeout_ms, 1, TIMEOUT_MAX) },
	{ NUMBER(resolver_max_queries, 1, 65536) },
	{ .name = "via_name", .set = set_via_name },
	{ .name = "http_ports", .set = set_http_ports },
	{ NUMBER(max_connections, 0, 10000000) },
	{ NUMBER(max_connections_per_client, 0, 10000000) },
	{ NUMBER(body_timeout_ms, 1, TIMEOUT_MAX) },
	{ NUMBER(body_min_rate, 0, 1000000000) },
	/* Last: the unknown-key message lists the first 256 bytes' worth of keys. */
	{ .name = "access_log_format", .set = set_access_log_format },
	{ .name = "metrics_listen", .set = set_metrics_listen },
	{ NUMBER(upstream_idle_max, 0, 65536) },
	{ NUMBER(upstream_idle_timeout_ms, 1, TIMEOUT_MAX) },
	{ NUMBER(workers, 0, CFG_MAX_WORKERS) },
	{ .name = "xdp_interfaces", .set = set_xdp_interfaces },
	{ .name = "deny", .set = set_deny },
	{ NUMBER(syn_rate, 0, 100000000) },
	{ NUMBER(syn_burst, 0, 100000000) },
};

static const struct key_def pool_keys[] = {
	{ .name = "balance", .set = set_balance },
	{ .name = "server", .set = set_server, .repeat = true },
	{ .name = "direct", .set = set_direct },
	{ .name = "check", .set = set_check },
	{ .name = "check_target", .set = set_check_target },
	{ POOL_NUMBER(check_interval_ms, 100, TIMEOUT_MAX) },
	{ POOL_NUMBER(check_timeout_ms, 10, TIMEOUT_MAX) },
	{ POOL_NUMBER(rise, 1, 100) },
	{ POOL_NUMBER(fall, 1, 100) },
	{ POOL_NUMBER(queue_max, 0, 1000000) },
	{ POOL_NUMBER(queue_timeout_ms, 1, TIMEOUT_MAX) },
	{ .name = "send_proxy", .set = set_send_proxy },
};

static const struct key_def rule_keys[] = {
	{ .name = "host", .set = set_host },
	{ .name = "path_prefix", .set = set_path_prefix },
	{ .name = "path_case", .set = set_path_case },
	{ .name = "method", .set = set_method },
	{ .name = "client_in", .set = set_client_in },
	{ .name = "client_not_in", .set = set_client_not_in },
	{ .name = "dest_in", .set = set_dest_in },
	{ .name = "dest_not_in", .set = set_dest_not_in },
	{ .name = "action", .set = set_action },
};

static const struct key_def route_keys[] = {
	{ .name = "default", .set = set_default },
};

#define KEYS(a) a, sizeof(a) / sizeof(a[0])
_Static_assert(sizeof(gateway_keys) / sizeof(gateway_keys[0]) <= MAX_KEYS, "raise MAX_KEYS");

static const struct section_def sections[] = {
	{ "gateway", SEC_GATEWAY, false, KEYS(gateway_keys) },
	{ "pool", SEC_POOL, true, KEYS(pool_keys) },
	{ "rule", SEC_RULE, true, KEYS(rule_keys) },
	{ "route", SEC_ROUTE, false, KEYS(route_keys) },
};

const struct section_def *cfg_section_find(const char *kind)
{
	for (unsigned i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (!strcmp(kind, sections[i].name))
			return &sections[i];
	return NULL;
}
