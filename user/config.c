// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Config loading. libinih splits the file into sections and key = value pairs; this
 * file checks every key against a per-section table and builds struct config.
 *
 * Debian's libinih calls the handler without a line number, so inih reads lines
 * through our own reader (read_line), which counts them. The reader also opens each
 * [section] itself: inih only calls the handler for keys, and an empty or unknown
 * section must still be seen and reported at its own line.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config.h"
#include "rules.h"

#define MAX_KEYS 24
#define TIMEOUT_MAX 86400000ULL /* one day, in ms */

enum section { SEC_NONE, SEC_GATEWAY, SEC_POOL, SEC_RULE, SEC_ROUTE };

struct parser;

struct key_def {
	const char *name;
	int (*set)(struct parser *ps, const struct key_def *k, const char *v);
	bool repeat;            /* may be given more than once (listen, server) */
	/* For the generic setters of [gateway]: the field, and its range or size. */
	size_t off;
	unsigned long long min, max;
	size_t size;            /* sizeof the field: string buffer size, or 4 / 8 for numbers */
};

struct section_def {
	const char *name;
	enum section sec;
	bool named;             /* [pool NAME], [rule NAME] */
	const struct key_def *keys;
	unsigned nkeys;
};

struct parser {
	struct config *cfg;
	const char *path;
	FILE *f;
	char *buf;              /* getline() buffer */
	size_t bufcap;
	int lineno;
	const struct section_def *def; /* current section, NULL before the first one */
	char sec_title[CFG_NAME_MAX + 8]; /* "gateway", "pool NAME": for messages */
	int sec_line;
	int key_line[MAX_KEYS]; /* first line of each key in the current section, 0 = unset */
	bool seen_gateway, seen_route;
	char (*rule_pool)[CFG_NAME_MAX]; /* per rule: NAME of "action = pool NAME" */
	char default_pool[CFG_NAME_MAX];
	int default_line;
	int err;                /* first error, -errno; the message is in errbuf */
	int err_line;
	char *errbuf;
	size_t errlen;
};

/* Record the first error as "FILE:LINE: message" (no LINE when 0) and return it. */
__attribute__((format(printf, 4, 5)))
static int fail_at(struct parser *ps, int err, int line, const char *fmt, ...)
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

#define fail(ps, fmt, ...) fail_at(ps, -EINVAL, (ps)->lineno, fmt, ##__VA_ARGS__)

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* A whole decimal number: digits only, no sign, no blanks, no hex, no overflow. */
static int parse_ull(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (~0ULL - 9) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return 0;
}

static bool valid_name(const char *s)
{
	if (!*s || strlen(s) >= CFG_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	return true;
}

static struct pool *cur_pool(struct parser *ps)
{
	return &ps->cfg->pools[ps->cfg->npools - 1];
}

static struct rule *cur_rule(struct parser *ps)
{
	return &ps->cfg->rules[ps->cfg->nrules - 1];
}

/* ---- [gateway] ---- */

static int set_listen(struct parser *ps, const struct key_def *k, const char *v)
{
	struct config *cfg = ps->cfg;
	struct sockaddr_any a;
	char name[CFG_NAME_MAX];
	int err;

	(void)k;
	if (cfg->nlisten == CFG_MAX_LISTEN)
		return fail(ps, "too many listen addresses (at most %d); remove some", CFG_MAX_LISTEN);
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
	void *field = (char *)ps->cfg + k->off;

	if (parse_ull(v, &n) || n < k->min || n > k->max)
		return fail(ps, "%s = '%s' is not a whole decimal number in %llu..%llu", k->name, v,
			    k->min, k->max);
	if (k->size == sizeof(uint64_t))
		*(uint64_t *)field = n;
	else
		*(unsigned *)field = n;
	return 0;
}

static int parse_port(const char *s, unsigned *port)
{
	unsigned long long n;

	if (parse_ull(s, &n) || n < 1 || n > 65535)
		return -EINVAL;
	*port = n;
	return 0;
}

static int set_connect_ports(struct parser *ps, const struct key_def *k, const char *v)
{
	struct config *cfg = ps->cfg;
	char *copy, *item, *next;
	int err = 0;

	(void)k;
	memset(cfg->connect_ports, 0, sizeof(cfg->connect_ports));
	cfg->connect_ports_any = !strcmp(v, "*");
	if (cfg->connect_ports_any)
		return 0;
	copy = strdup(v);
	if (!copy)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	/* strtok_r would skip empty items ("443,,80"): a typo we want to report. */
	for (item = copy; item; item = next) {
		char *comma = strchr(item, ',');
		unsigned lo, hi;
		char *dash;

		next = comma ? comma + 1 : NULL;
		if (comma)
			*comma = '\0';
		item = trim(item);
		dash = strchr(item, '-');
		if (dash)
			*dash = '\0';
		if (parse_port(trim(item), &lo) || (dash && parse_port(trim(dash + 1), &hi)) ||
		    (dash && hi < lo)) {
			err = fail(ps, "connect_ports '%s': each item must be a port 1-65535 or a range "
				   "LOW-HIGH, comma separated (e.g. 443, 8443, 9000-9100), or '*'", v);
			break;
		}
		if (!dash)
			hi = lo;
		for (unsigned p = lo; p <= hi; p++)
			cfg->connect_ports[p / 8] |= 1u << (p % 8);
	}
	free(copy);
	return err;
}

/* ---- [pool NAME] ---- */

/* Names of enum balance, in its order. */
static const char *const balance_names[] = { "roundrobin", "leastconn", "source", "target" };

const char *config_balance_name(enum balance b)
{
	return (unsigned)b < sizeof(balance_names) / sizeof(balance_names[0]) ? balance_names[b] : "?";
}

static int set_balance(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	for (unsigned i = 0; i < sizeof(balance_names) / sizeof(balance_names[0]); i++) {
		if (!strcmp(v, balance_names[i])) {
			cur_pool(ps)->balance = (enum balance)i;
			return 0;
		}
	}
	return fail(ps, "balance '%s' is not one of roundrobin, leastconn, source, target", v);
}

/* "host:port [weight=N]" */
static int set_server(struct parser *ps, const struct key_def *k, const char *v)
{
	struct pool *p = cur_pool(ps);
	struct server *s, *servers;
	char *copy, *tok, *save = NULL;
	unsigned long long w;
	int err;

	(void)k;
	if (p->direct)
		return fail(ps, "pool '%s' is direct = yes and cannot also have servers; remove one of them",
			    p->name);
	servers = realloc(p->servers, (p->nservers + 1) * sizeof(*servers));
	if (!servers)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	p->servers = servers;
	s = &servers[p->nservers];
	memset(s, 0, sizeof(*s));
	s->weight = 1;

	copy = strdup(v);
	if (!copy)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	tok = strtok_r(copy, " \t", &save);
	err = parse_hostport(tok, &s->addr);
	if (err == -ENOENT)
		err = fail(ps, "server '%s': cannot resolve the host name", tok);
	else if (err)
		err = fail(ps, "server '%s' is not host:port (e.g. 127.0.0.1:8888 or [::1]:8888, port 1-65535)",
			   tok);
	while (!err && (tok = strtok_r(NULL, " \t", &save))) {
		if (strncmp(tok, "weight=", 7))
			err = fail(ps, "server option '%s' is not known (expected weight=N)", tok);
		else if (parse_ull(tok + 7, &w) || w < 1 || w > 1000)
			err = fail(ps, "server weight '%s' is not a whole number in 1..1000", tok + 7);
		else
			s->weight = w;
	}
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

static int set_x_forwarded_for(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (strcmp(v, "yes") && strcmp(v, "no"))
		return fail(ps, "x_forwarded_for '%s' must be yes or no", v);
	ps->cfg->x_forwarded_for = !strcmp(v, "yes");
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

/* ---- [rule NAME] ---- */

static int set_host(struct parser *ps, const struct key_def *k, const char *v)
{
	struct in6_addr a6;
	char host[256];
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
	for (char *c = host; *c; c++) {
		if (!isalnum((unsigned char)*c) && !strchr("-._:", *c))
			return fail(ps, "host '%s' is not a host name or IP address", v);
		*c = tolower((unsigned char)*c);
	}
	cur_rule(ps)->host = strdup(host);
	if (!cur_rule(ps)->host)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	return 0;
}

static int set_path_prefix(struct parser *ps, const struct key_def *k, const char *v)
{
	size_t n = strlen(v);
	char *norm;

	(void)k;
	if (v[0] != '/')
		return fail(ps, "path_prefix '%s' must start with '/'", v);
	norm = malloc(n + 2);
	if (!norm)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	/* Stored normalised, as request paths are compared after normalisation. */
	if (path_normalise(v, n, norm, n + 2) < 0) {
		free(norm);
		return fail(ps, "path_prefix '%s' is not a valid path", v);
	}
	cur_rule(ps)->path_prefix = norm;
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
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
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
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	}
	for (item = copy; item; item = next) {
		char *comma = strchr(item, ',');

		next = comma ? comma + 1 : NULL;
		if (comma)
			*comma = '\0';
		item = trim(item);
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
		return 0;
	}
	if (!strncmp(v, "pool", 4) && isspace((unsigned char)v[4])) {
		for (name = v + 4; isspace((unsigned char)*name); name++)
			;
		if (!valid_name(name))
			return fail(ps, "action '%s': pool name must be letters, digits, '-', '_' or '.'", v);
		r->action = ACT_POOL;
		/* Pools may be defined further down: resolved once the whole file is read. */
		strcpy(ps->rule_pool[ps->cfg->nrules - 1], name);
		return 0;
	}
	return fail(ps, "action '%s' is not one of reject, pool NAME, tunnel", v);
}

/* ---- [route] ---- */

static int set_default(struct parser *ps, const struct key_def *k, const char *v)
{
	(void)k;
	if (!valid_name(v))
		return fail(ps, "default '%s' is not a pool name", v);
	strcpy(ps->default_pool, v);
	ps->default_line = ps->lineno;
	return 0;
}

#define CFG_FIELD(f) .off = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define STRING(f) .name = #f, .set = set_string, CFG_FIELD(f)
#define NUMBER(f, lo, hi) .name = #f, .set = set_number, CFG_FIELD(f), .min = lo, .max = hi

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
	{ .name = "x_forwarded_for", .set = set_x_forwarded_for },
};

static const struct key_def pool_keys[] = {
	{ .name = "balance", .set = set_balance },
	{ .name = "server", .set = set_server, .repeat = true },
	{ .name = "direct", .set = set_direct },
};

static const struct key_def rule_keys[] = {
	{ .name = "host", .set = set_host },
	{ .name = "path_prefix", .set = set_path_prefix },
	{ .name = "method", .set = set_method },
	{ .name = "client_in", .set = set_client_in },
	{ .name = "client_not_in", .set = set_client_not_in },
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

/* Line of the first @name key in the current section, 0 if absent. */
static int key_line(const struct parser *ps, const char *name)
{
	for (unsigned i = 0; i < ps->def->nkeys; i++)
		if (!strcmp(ps->def->keys[i].name, name))
			return ps->key_line[i];
	return 0;
}

/* Checks that need the whole section, at its end. */
static int end_section(struct parser *ps)
{
	if (!ps->def)
		return 0;
	if (ps->def->sec == SEC_POOL) {
		struct pool *p = cur_pool(ps);

		if (!p->direct && !p->nservers)
			return fail_at(ps, -EINVAL, ps->sec_line,
				       "pool '%s' has no server; add 'server = host:port' or 'direct = yes'",
				       p->name);
	}
	if (ps->def->sec == SEC_RULE && !key_line(ps, "action"))
		return fail_at(ps, -EINVAL, ps->sec_line,
			       "rule '%s' has no action; add 'action = reject | pool NAME | tunnel'",
			       cur_rule(ps)->name);
	return 0;
}

static int add_pool(struct parser *ps, const char *name)
{
	struct config *cfg = ps->cfg;
	struct pool *pools;

	for (unsigned i = 0; i < cfg->npools; i++)
		if (!strcmp(cfg->pools[i].name, name))
			return fail(ps, "pool '%s' is defined twice; rename or merge one", name);
	pools = realloc(cfg->pools, (cfg->npools + 1) * sizeof(*pools));
	if (!pools)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	cfg->pools = pools;
	memset(&pools[cfg->npools], 0, sizeof(*pools));
	strcpy(pools[cfg->npools].name, name);
	pools[cfg->npools].balance = BAL_ROUNDROBIN;
	cfg->npools++;
	return 0;
}

static int add_rule(struct parser *ps, const char *name)
{
	struct config *cfg = ps->cfg;
	char (*refs)[CFG_NAME_MAX];
	struct rule *rules;

	for (unsigned i = 0; i < cfg->nrules; i++)
		if (!strcmp(cfg->rules[i].name, name))
			return fail(ps, "rule '%s' is defined twice; rename or merge one", name);
	refs = realloc(ps->rule_pool, (cfg->nrules + 1) * sizeof(*refs));
	if (refs)
		ps->rule_pool = refs;
	rules = refs ? realloc(cfg->rules, (cfg->nrules + 1) * sizeof(*rules)) : NULL;
	if (!rules)
		return fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	cfg->rules = rules;
	memset(&rules[cfg->nrules], 0, sizeof(*rules));
	strcpy(rules[cfg->nrules].name, name);
	rules[cfg->nrules].line = ps->lineno;
	refs[cfg->nrules][0] = '\0';
	cfg->nrules++;
	return 0;
}

/* @s is a "[...]" line with leading blanks removed. */
static int begin_section(struct parser *ps, const char *s)
{
	char head[256], *kind, *name;
	const char *close = strchr(s, ']');
	const struct section_def *def = NULL;
	size_t n;
	int err;

	if (!close)
		return 0; /* inih reports the syntax error */
	err = end_section(ps);
	if (err)
		return err;
	n = close - s - 1;
	if (n >= sizeof(head))
		return fail(ps, "section name is too long");
	memcpy(head, s + 1, n);
	head[n] = '\0';
	kind = trim(head);
	name = kind + strcspn(kind, " \t");
	if (*name)
		*name++ = '\0';
	name = trim(name);

	for (unsigned i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (!strcmp(kind, sections[i].name))
			def = &sections[i];
	if (!def)
		return fail(ps, "unknown section [%s] (expected [gateway], [pool NAME], [rule NAME] or [route])",
			    kind);
	if (def->named && !valid_name(name))
		return fail(ps, "[%s%s%s] needs one name of letters, digits, '-', '_' or '.': [%s NAME]",
			    kind, *name ? " " : "", name, kind);
	if (!def->named && *name)
		return fail(ps, "[%s] takes no name; write [%s]", kind, kind);

	ps->def = def;
	snprintf(ps->sec_title, sizeof(ps->sec_title), "%s%s%s", kind, *name ? " " : "", name);
	ps->sec_line = ps->lineno;
	memset(ps->key_line, 0, sizeof(ps->key_line));
	switch (def->sec) {
	case SEC_GATEWAY:
	case SEC_ROUTE: {
		bool *seen = def->sec == SEC_GATEWAY ? &ps->seen_gateway : &ps->seen_route;

		if (*seen)
			return fail(ps, "section [%s] appears twice; merge them", kind);
		*seen = true;
		return 0;
	}
	case SEC_POOL:
		return add_pool(ps, name);
	case SEC_RULE:
		return add_rule(ps, name);
	default:
		return 0;
	}
}

/*
 * inih's reader: one line per call, counted. Leading blanks are removed so that an
 * indented key is a key, never an inih "continuation line" of the previous value.
 */
static char *read_line(char *str, int num, void *stream)
{
	struct parser *ps = stream;
	ssize_t n;
	char *s;

	if (ps->err)
		return NULL; /* stop at the first error */
	n = getline(&ps->buf, &ps->bufcap, ps->f);
	if (n < 0)
		return NULL;
	ps->lineno++;
	s = ps->buf;
	if (ps->lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
		s += 3; /* a UTF-8 byte order mark, as editors on some systems write */
	while (*s == ' ' || *s == '\t')
		s++;
	/* inih cuts longer lines in two and would parse the tail as a line of its own. */
	if (strlen(s) > (size_t)num - 1) {
		fail(ps, "line is longer than %d characters; shorten it", num - 2);
		return NULL;
	}
	strcpy(str, s);
	if (s[0] == '[' && begin_section(ps, s))
		return NULL;
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parser *ps = user;
	const struct section_def *def = ps->def;
	const struct key_def *k = NULL;
	unsigned i;

	(void)section; /* begin_section() already parsed it */
	if (ps->err)
		return 0;
	if (!def) {
		fail(ps, "key '%s' is outside any section; put it under [gateway], [pool NAME], "
			 "[rule NAME] or [route]", name);
		return 0;
	}
	for (i = 0; i < def->nkeys && !k; i++)
		if (!strcmp(name, def->keys[i].name))
			k = &def->keys[i];
	if (!k) {
		char expected[256] = "";
		size_t n = 0;

		for (i = 0; i < def->nkeys && n < sizeof(expected); i++)
			n += snprintf(expected + n, sizeof(expected) - n, "%s%s", i ? ", " : "",
				      def->keys[i].name);
		fail(ps, "unknown key '%s' in [%s] (expected %s)", name, ps->sec_title, expected);
		return 0;
	}
	i = k - def->keys;
	if (ps->key_line[i] && !k->repeat) {
		fail(ps, "'%s' is set twice in [%s] (first at line %d); keep one", name, ps->sec_title,
		     ps->key_line[i]);
		return 0;
	}
	if (!ps->key_line[i])
		ps->key_line[i] = ps->lineno;
	if (!*value) {
		fail(ps, "'%s' has no value", name);
		return 0;
	}
	return k->set(ps, k, value) == 0;
}

static int find_pool(const struct config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->npools; i++)
		if (!strcmp(cfg->pools[i].name, name))
			return i;
	return -1;
}

/* Checks across sections, once the whole file is read. */
static int finish(struct parser *ps)
{
	struct config *cfg = ps->cfg;
	int err = end_section(ps);

	if (err)
		return err;
	if (!cfg->nlisten)
		return fail_at(ps, -EINVAL, 0,
			       "no listen address; add 'listen = 127.0.0.1:3128' under [gateway]");
	if (!cfg->npools)
		return fail_at(ps, -EINVAL, 0,
			       "no pool is defined; add [pool NAME] with 'direct = yes' or 'server = host:port'");
	for (unsigned i = 0; i < cfg->nrules; i++) {
		struct rule *r = &cfg->rules[i];

		if (r->action != ACT_POOL)
			continue;
		r->pool = find_pool(cfg, ps->rule_pool[i]);
		if (r->pool < 0)
			return fail_at(ps, -EINVAL, r->line,
				       "rule '%s': pool '%s' is not defined; add [pool %s] or fix the action",
				       r->name, ps->rule_pool[i], ps->rule_pool[i]);
	}
	if (ps->default_line) {
		cfg->default_pool = find_pool(cfg, ps->default_pool);
		if (cfg->default_pool < 0)
			return fail_at(ps, -EINVAL, ps->default_line,
				       "[route] default: pool '%s' is not defined; name one of the [pool NAME] sections",
				       ps->default_pool);
	} else if (cfg->npools == 1) {
		cfg->default_pool = 0;
	} else {
		return fail_at(ps, -EINVAL, 0,
			       "%u pools and no [route] default; add [route] with 'default = POOL'",
			       cfg->npools);
	}
	return 0;
}

static void set_defaults(struct config *cfg)
{
	cfg->relay = RELAY_AUTO;
	strcpy(cfg->control, "/run/tunnelgate/control.sock");
	strcpy(cfg->bpf_pin_dir, "/sys/fs/bpf/tunnelgate");
	cfg->connect_ports[443 / 8] |= 1u << (443 % 8);
	cfg->header_timeout_ms = 10000;
	cfg->connect_timeout_ms = 5000;
	cfg->idle_timeout_ms = 0;
	cfg->drain_timeout_ms = 30000;
	cfg->max_header_bytes = 16384;
	cfg->max_backlog_bytes = 4194304;
	cfg->pause = PAUSE_SOCKOPS;
	cfg->relay_sndbuf_bytes = TG_DEFAULT_RELAY_SNDBUF;
	cfg->relay_rcvbuf_bytes = TG_DEFAULT_RELAY_RCVBUF;
	strcpy(cfg->access_log, "-");
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
	struct parser ps = { .cfg = cfg, .path = path, .errbuf = err, .errlen = errlen };
	int r;

	memset(cfg, 0, sizeof(*cfg));
	if (errlen)
		err[0] = '\0';
	ps.f = fopen(path, "r");
	if (!ps.f) {
		r = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	set_defaults(cfg);
	cfg->path = strdup(path);
	if (!cfg->path) {
		fail_at(&ps, -ENOMEM, 0, "out of memory");
		goto out;
	}

	r = ini_parse_stream(read_line, &ps, handler, &ps);
	if (ferror(ps.f)) {
		ps.err = 0;
		fail_at(&ps, -EIO, 0, "cannot read: %s", strerror(errno));
	} else if (r == -2) {
		fail_at(&ps, -ENOMEM, 0, "out of memory");
	} else if (r > 0 && (!ps.err || r < ps.err_line)) {
		/* inih's own syntax error, on a line before any of ours */
		ps.err = 0;
		fail_at(&ps, -EINVAL, r, "syntax error: expected '[section]', 'key = value' or a ; comment");
	} else if (!ps.err) {
		finish(&ps);
	}
out:
	fclose(ps.f);
	free(ps.buf);
	free(ps.rule_pool);
	if (ps.err)
		config_free(cfg);
	return ps.err;
}

void config_free(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->npools; i++)
		free(cfg->pools[i].servers);
	free(cfg->pools);
	for (unsigned i = 0; i < cfg->nrules; i++) {
		struct rule *r = &cfg->rules[i];

		free(r->host);
		free(r->path_prefix);
		free(r->method);
		free(r->client_in);
		free(r->client_not_in);
	}
	free(cfg->rules);
	free(cfg->path);
	/* Zeroed, so a second config_free() or a use after it fails safely. */
	memset(cfg, 0, sizeof(*cfg));
}

bool config_port_allowed(const struct config *cfg, unsigned port)
{
	if (port < 1 || port > 65535)
		return false;
	return cfg->connect_ports_any || (cfg->connect_ports[port / 8] & (1u << (port % 8)));
}

int parse_hostport(const char *s, struct sockaddr_any *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	const char *host, *port;
	char buf[256];
	size_t hlen;
	unsigned p;
	int r;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		host = s + 1;
		hlen = close - host;
		port = close + 2;
		hints.ai_family = AF_INET6;
		hints.ai_flags |= AI_NUMERICHOST;
	} else {
		const char *colon = strrchr(s, ':');

		/* A second colon means an IPv6 address without brackets: ambiguous. */
		if (!colon || memchr(s, ':', colon - s))
			return -EINVAL;
		host = s;
		hlen = colon - s;
		port = colon + 1;
	}
	if (!hlen || hlen >= sizeof(buf) || parse_port(port, &p))
		return -EINVAL;
	memcpy(buf, host, hlen);
	buf[hlen] = '\0';

	r = getaddrinfo(buf, port, &hints, &res);
	if (r == EAI_NONAME || r == EAI_AGAIN || r == EAI_FAIL || r == EAI_NODATA)
		return hints.ai_flags & AI_NUMERICHOST ? -EINVAL : -ENOENT;
	if (r)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

bool sockaddr_ip16(const struct sockaddr_any *a, uint8_t out[16])
{
	memset(out, 0, 16);
	if (a->sa.sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a->in.sin_addr, 4);
		return true;
	}
	if (a->sa.sa_family == AF_INET6) {
		memcpy(out, &a->in6.sin6_addr, 16);
		return true;
	}
	return false;
}

char *sockaddr_fmt(const struct sockaddr_any *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (!len)
		return buf;
	if (a->sa.sa_family == AF_INET && inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip)))
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in.sin_port));
	else if (a->sa.sa_family == AF_INET6 && inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip)))
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	else
		snprintf(buf, len, "?");
	return buf;
}
