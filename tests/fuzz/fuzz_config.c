// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target for user/config.c: the input is a config file, loaded from a memfd
 * through /proc/self/fd, then freed (LeakSanitizer checks that everything was).
 *
 * Linked with -Wl,--wrap=getaddrinfo: host names never reach DNS, so runs are fast and
 * replay the same everywhere; a name is simply "cannot resolve".
 * Invariants that do not hold abort() with a line on stderr saying which one.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "rules.h"

#define check(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz_config: invariant failed at line %d: %s\n",\
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res)
{
	struct addrinfo h = { 0 };

	if (hints)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return __real_getaddrinfo(node, service, &h, res);
}

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = memfd_create("fuzz_config.conf", 0);
	if (fd < 0) {
		perror("fuzz_config: memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strnlen(s, CFG_NAME_MAX);

	if (!n || n == CFG_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	return true;
}

static void check_cidrs(const struct cidr *list, unsigned n)
{
	check(!n == !list);
	for (unsigned i = 0; i < n; i++)
		check(list[i].len <= 128);
}

static void check_loaded(const struct config *cfg)
{
	check(cfg->path && !strcmp(cfg->path, path));
	check(cfg->nlisten >= 1 && cfg->nlisten <= CFG_MAX_LISTEN);
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		sa_family_t f = cfg->listen[i].sa.sa_family;

		check((f == AF_INET && cfg->listen[i].len == sizeof(struct sockaddr_in)) ||
		      (f == AF_INET6 && cfg->listen[i].len == sizeof(struct sockaddr_in6)));
	}
	check(cfg->relay <= RELAY_SPLICE);
	check(memchr(cfg->control, '\0', sizeof(cfg->control)) && cfg->control[0]);
	check(memchr(cfg->bpf_pin_dir, '\0', sizeof(cfg->bpf_pin_dir)) && cfg->bpf_pin_dir[0]);
	check(memchr(cfg->access_log, '\0', sizeof(cfg->access_log)) && cfg->access_log[0]);
	check(cfg->header_timeout_ms >= 1 && cfg->connect_timeout_ms >= 1);
	check(cfg->drain_timeout_ms >= 1);
	check(cfg->max_header_bytes >= 1024 && cfg->max_header_bytes <= 1048576);
	check(cfg->max_backlog_bytes >= 65536 && cfg->max_backlog_bytes <= 1073741824);
	check(!config_port_allowed(cfg, 0) && !config_port_allowed(cfg, 65536));

	check(cfg->npools >= 1 && cfg->pools);
	check(cfg->default_pool >= 0 && (unsigned)cfg->default_pool < cfg->npools);
	for (unsigned i = 0; i < cfg->npools; i++) {
		const struct pool *p = &cfg->pools[i];

		check(valid_name(p->name));
		for (unsigned j = 0; j < i; j++)
			check(strcmp(p->name, cfg->pools[j].name));
		check(p->balance <= BAL_TARGET);
		check(p->direct ? !p->nservers : p->nservers >= 1);
		for (unsigned j = 0; j < p->nservers; j++) {
			const struct server *s = &p->servers[j];

			check(s->weight >= 1 && s->weight <= 1000);
			check(memchr(s->name, '\0', sizeof(s->name)) && s->name[0] != '?');
			for (unsigned k = 0; k < j; k++)
				check(strcmp(s->name, p->servers[k].name));
		}
	}
	for (unsigned i = 0; i < cfg->nrules; i++) {
		const struct rule *r = &cfg->rules[i];

		check(valid_name(r->name) && r->line >= 1);
		for (unsigned j = 0; j < i; j++)
			check(strcmp(r->name, cfg->rules[j].name) && r->line > cfg->rules[j].line);
		check(r->action <= ACT_TUNNEL);
		if (r->action == ACT_POOL)
			check(r->pool >= 0 && (unsigned)r->pool < cfg->npools);
		if (r->host) {
			char again[256];

			check(r->host[0]);
			for (const char *c = r->host; *c; c++)
				check(!(*c >= 'A' && *c <= 'Z'));
			/* Stored canonical: canonicalising it again changes nothing. */
			check(host_canonical(r->host, strlen(r->host), again, sizeof(again)) ==
				      (int)strlen(r->host) &&
			      !strcmp(again, r->host));
		}
		if (r->method) {
			check(r->method[0]);
			for (const char *c = r->method; *c; c++)
				check(!(*c >= 'a' && *c <= 'z'));
		}
		if (r->path_prefix) {
			/* Stored canonical: canonicalising it again changes nothing. */
			size_t n = strlen(r->path_prefix);
			char *again = malloc(n + 2);

			if (!again)
				abort();
			check(r->path_prefix[0] == '/');
			if (path_canonical(r->path_prefix, n, again, n + 2) != (int)n ||
			    strcmp(again, r->path_prefix)) {
				fprintf(stderr,
					"fuzz_config: path_prefix \"%s\" is not canonical\n",
					r->path_prefix);
				check(!"stored path_prefix is in canonical form");
			}
			free(again);
		}
		check_cidrs(r->client_in, r->nclient_in);
		check_cidrs(r->client_not_in, r->nclient_not_in);
	}
}

/* Whatever rules came out, matching with them works. */
static void match_some(const struct config *cfg)
{
	struct sockaddr_any v4 = { .in = { .sin_family = AF_INET,
					   .sin_addr = { .s_addr = htonl(0x0a000001) } },
				   .len = sizeof(struct sockaddr_in) };
	struct rule_input in[] = {
		{ .method = "CONNECT", .method_len = 7, .host = "example.com", .host_len = 11,
		  .client = &v4 },
		{ .method = "GET", .method_len = 3, .host = "example.com", .host_len = 11,
		  .path = "/admin/../x/%2e%2e/y?q", .path_len = 22, .client = &v4 },
		{ .method = "POST", .method_len = 4, .host = "::1", .host_len = 3, .path = "/",
		  .path_len = 1 },
	};

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		const struct rule *r;
		int err = rules_match(cfg, &in[i], &r);

		check(!err || !r);
		check(err == 0 || err == -EILSEQ || err == -ERANGE);
		check(!r || (r >= cfg->rules && r < cfg->rules + cfg->nrules));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t errlens[] = { 256, 1, 16, 0 };
	static const struct config zero;
	struct config *cfg = malloc(sizeof(*cfg));
	size_t errlen = errlens[(size ? data[size - 1] : 0) & 3];
	char *err = malloc(errlen ? errlen : 1);
	int r;

	if (!cfg || !err)
		abort();
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size) {
		perror("fuzz_config: cannot write the memfd");
		abort();
	}
	memset(cfg, 0x5a, sizeof(*cfg)); /* config_load must not trust what was there */
	r = config_load(path, cfg, err, errlen);
	if (r) {
		check(r == -EINVAL || r == -ENOMEM || r == -EIO);
		/* One line, "PATH:LINE: what", cut to errlen. */
		if (errlen) {
			check(memchr(err, '\0', errlen));
			check(strlen(err) == errlen - 1 || !strchr(err, '\n'));
			if (errlen == 256)
				check(!strncmp(err, path, strlen(path)) && err[strlen(path)] == ':');
		}
		check(!memcmp(cfg, &zero, sizeof(zero)));
	} else {
		check_loaded(cfg);
		match_some(cfg);
	}
	config_free(cfg);
	check(!memcmp(cfg, &zero, sizeof(zero)));
	config_free(cfg); /* safe on a freed config */
	free(cfg);
	free(err);
	return 0;
}
