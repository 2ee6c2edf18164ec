// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Config loading. libinih splits the file into sections and key = value pairs; this
 * file finds each key in its section's table (config_keys.c, whose setters check and
 * store the values) and checks what spans keys and sections: keys a section needs,
 * pools that rules and [route] name, the default route.
 *
 * Debian's libinih calls the handler without a line number, so inih reads lines
 * through our own reader (read_line), which counts them. The reader also opens each
 * [section] itself: inih only calls the handler for keys, and an empty or unknown
 * section must still be seen and reported at its own line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include <ini.h>

#include "config_keys.h"
#include "pool.h"

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
			return cfg_fail_at(ps, -EINVAL, ps->sec_line,
				       "pool '%s' has no server; add 'server = host:port' or 'direct = yes'",
				       p->name);
		if (p->check == CHECK_HTTP_CONNECT && !p->check_target[0])
			return cfg_fail_at(ps, -EINVAL, ps->sec_line,
				       "pool '%s': check = http_connect needs check_target = IP:port (what the check CONNECTs to)",
				       p->name);
		if (p->check != CHECK_NONE && p->direct)
			return cfg_fail_at(ps, -EINVAL, ps->sec_line,
				       "pool '%s' is direct = yes: it has no servers to check; remove check",
				       p->name);
	}
	if (ps->def->sec == SEC_RULE && !key_line(ps, "action"))
		return cfg_fail_at(ps, -EINVAL, ps->sec_line,
			       "rule '%s' has no action; add 'action = reject | pool NAME | tunnel [NAME]'",
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
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
	cfg->pools = pools;
	memset(&pools[cfg->npools], 0, sizeof(*pools));
	strcpy(pools[cfg->npools].name, name);
	pools[cfg->npools].balance = BAL_ROUNDROBIN;
	pools[cfg->npools].check_interval_ms = 2000;
	pools[cfg->npools].check_timeout_ms = 1000;
	pools[cfg->npools].rise = 2;
	pools[cfg->npools].fall = 3;
	pools[cfg->npools].queue_max = 128;
	pools[cfg->npools].queue_timeout_ms = 5000;
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
		return cfg_fail_at(ps, -ENOMEM, ps->lineno, "out of memory");
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
	const struct section_def *def;
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
	kind = cfg_trim(head);
	name = kind + strcspn(kind, " \t");
	if (*name)
		*name++ = '\0';
	name = cfg_trim(name);

	def = cfg_section_find(kind);
	if (!def)
		return fail(ps, "unknown section [%s] (expected [gateway], [pool NAME], [rule NAME] or [route])",
			    kind);
	if (def->named && !cfg_valid_name(name))
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
/* Without via_name: "hostname:port" of the first listen address. */
static void default_via_name(struct config *cfg)
{
	const struct sockaddr_any *a = &cfg->listen[0];
	char host[64] = "";

	if (cfg->via_name[0])
		return;
	if (gethostname(host, sizeof(host)) || !host[0])
		strcpy(host, "tunnelgate");
	host[sizeof(host) - 1] = '\0';
	snprintf(cfg->via_name, sizeof(cfg->via_name), "%s:%u", host,
		 sockaddr_port(a));
}

/* Point every server at its runtime state (pool.c), shared with other loaded configs. */
static int bind_servers(struct parser *ps)
{
	struct config *cfg = ps->cfg;

	for (unsigned i = 0; i < cfg->npools; i++) {
		struct pool *p = &cfg->pools[i];

		p->state = pool_state_get(p->name);
		if (!p->state)
			return cfg_fail_at(ps, -ENOMEM, 0, "out of memory");
		for (unsigned j = 0; j < p->nservers; j++) {
			p->servers[j].state = server_state_get(p->name, &p->servers[j].addr);
			if (!p->servers[j].state)
				return cfg_fail_at(ps, -ENOMEM, 0, "out of memory");
		}
	}
	return 0;
}

static int finish(struct parser *ps)
{
	struct config *cfg = ps->cfg;
	int err = end_section(ps);

	if (err)
		return err;
	if (!cfg->nlisten)
		return cfg_fail_at(ps, -EINVAL, 0,
			       "no listen address; add 'listen = 127.0.0.1:3128' under [gateway]");
	if (!cfg->npools)
		return cfg_fail_at(ps, -EINVAL, 0,
			       "no pool is defined; add [pool NAME] with 'direct = yes' or 'server = host:port'");
	for (unsigned i = 0; i < cfg->nrules; i++) {
		struct rule *r = &cfg->rules[i];

		if (r->action != ACT_POOL && !(r->action == ACT_TUNNEL && ps->rule_pool[i][0]))
			continue;
		r->pool = find_pool(cfg, ps->rule_pool[i]);
		if (r->pool < 0)
			return cfg_fail_at(ps, -EINVAL, r->line,
				       "rule '%s': pool '%s' is not defined; add [pool %s] or fix the action",
				       r->name, ps->rule_pool[i], ps->rule_pool[i]);
	}
	if (ps->default_line) {
		cfg->default_pool = find_pool(cfg, ps->default_pool);
		if (cfg->default_pool < 0)
			return cfg_fail_at(ps, -EINVAL, ps->default_line,
				       "[route] default: pool '%s' is not defined; name one of the [pool NAME] sections",
				       ps->default_pool);
	} else if (cfg->npools == 1) {
		cfg->default_pool = 0;
	} else {
		return cfg_fail_at(ps, -EINVAL, 0,
			       "%u pools and no [route] default; add [route] with 'default = POOL'",
			       cfg->npools);
	}
	default_via_name(cfg);
	return bind_servers(ps);
}

static void set_defaults(struct config *cfg)
{
	cfg->relay = RELAY_AUTO;
	strcpy(cfg->control, "/run/tunnelgate/control.sock");
	strcpy(cfg->bpf_pin_dir, "/sys/fs/bpf/tunnelgate");
	cfg->connect_ports[443 / 8] |= 1u << (443 % 8);
	for (unsigned i = 0; i < 3; i++) {
		static const unsigned http[] = { 80, 443, 8080 };

		cfg->http_ports[http[i] / 8] |= 1u << (http[i] % 8);
	}
	cfg->body_timeout_ms = 30000;
	cfg->body_min_rate = 500;
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
	cfg->access_log_json = false;
	strcpy(cfg->user, "nobody");
	cfg->seccomp = TG_DEFAULT_SECCOMP;
	cfg->resolver_timeout_ms = 5000;
	cfg->resolver_max_queries = 256;
	cfg->upstream_idle_max = 64;
	cfg->upstream_idle_timeout_ms = 10000;
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
		cfg_fail_at(&ps, -ENOMEM, 0, "out of memory");
		goto out;
	}

	r = ini_parse_stream(read_line, &ps, handler, &ps);
	if (ferror(ps.f)) {
		ps.err = 0;
		cfg_fail_at(&ps, -EIO, 0, "cannot read: %s", strerror(errno));
	} else if (r == -2) {
		cfg_fail_at(&ps, -ENOMEM, 0, "out of memory");
	} else if (r > 0 && (!ps.err || r < ps.err_line)) {
		/* inih's own syntax error, on a line before any of ours */
		ps.err = 0;
		cfg_fail_at(&ps, -EINVAL, r, "syntax error: expected '[section]', 'key = value' or a ; comment");
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
	for (unsigned i = 0; i < cfg->npools; i++) {
		for (unsigned j = 0; j < cfg->pools[i].nservers; j++)
			server_state_put(cfg->pools[i].servers[j].state);
		pool_state_put(cfg->pools[i].state);
		free(cfg->pools[i].servers);
	}
	free(cfg->pools);
	for (unsigned i = 0; i < cfg->nrules; i++) {
		struct rule *r = &cfg->rules[i];

		free(r->host);
		free(r->path_prefix);
		free(r->method);
		free(r->client_in);
		free(r->client_not_in);
		free(r->dest_in);
		free(r->dest_not_in);
	}
	free(cfg->rules);
	free(cfg->deny);
	free(cfg->path);
	/* Zeroed, so a second config_free() or a use after it fails safely. */
	memset(cfg, 0, sizeof(*cfg));
}

void config_put(struct config *cfg)
{
	if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		config_free(cfg);
		free(cfg);
	}
}

bool config_http_port_allowed(const struct config *cfg, unsigned port)
{
	return cfg->http_ports_any || (cfg->http_ports[port / 8] & (1u << (port % 8)));
}

/*
 * Each connection may hold two sockets and, relayed with splice, four pipe ends; 64
 * descriptors stay for listeners, the control socket, BPF objects and logs.
 */
unsigned config_max_connections(const struct config *cfg)
{
	struct rlimit rl;

	if (cfg->max_connections)
		return cfg->max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return 100000;
	return rl.rlim_cur > 64 + 6 ? (unsigned)((rl.rlim_cur - 64) / 6) : 1;
}

unsigned config_workers(const struct config *cfg)
{
	cpu_set_t set;
	int n;

	if (cfg->workers)
		return cfg->workers;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	n = CPU_COUNT(&set);
	return n < 1 ? 1 : n > CFG_MAX_WORKERS ? CFG_MAX_WORKERS : (unsigned)n;
}

bool config_port_allowed(const struct config *cfg, unsigned port)
{
	if (port < 1 || port > 65535)
		return false;
	return cfg->connect_ports_any || (cfg->connect_ports[port / 8] & (1u << (port % 8)));
}

const char *config_balance_name(enum balance b)
{
	return (unsigned)b < sizeof(cfg_balance_names) / sizeof(cfg_balance_names[0]) ?
	       cfg_balance_names[b] : "?";
}
