/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The keys of each config section and their setters, for the loader in config.c, with
 * the parser state both sides work on.
 */
#ifndef TUNNELGATE_CONFIG_KEYS_H
#define TUNNELGATE_CONFIG_KEYS_H

#include <errno.h>
#include <stdio.h>

#include "config.h"

#define MAX_KEYS 48

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

/* Names of enum balance, in its order. */
extern const char *const cfg_balance_names[BAL_TARGET + 1];

/* The section [@kind] or [@kind NAME], or NULL if there is no such kind. */
const struct section_def *cfg_section_find(const char *kind);

/* Record the first error as "FILE:LINE: message" (no LINE when 0) and return it. */
__attribute__((format(printf, 4, 5)))
int cfg_fail_at(struct parser *ps, int err, int line, const char *fmt, ...);

#define fail(ps, fmt, ...) cfg_fail_at(ps, -EINVAL, (ps)->lineno, fmt, ##__VA_ARGS__)

/* @s without its leading and trailing blanks; the trailing ones are cut in place. */
char *cfg_trim(char *s);

/* A pool or rule name: 1..CFG_NAME_MAX-1 letters, digits, '-', '_' or '.'. */
bool cfg_valid_name(const char *s);

static inline struct pool *cur_pool(struct parser *ps)
{
	return &ps->cfg->pools[ps->cfg->npools - 1];
}

static inline struct rule *cur_rule(struct parser *ps)
{
	return &ps->cfg->rules[ps->cfg->nrules - 1];
}

#endif
