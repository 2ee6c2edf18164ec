/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Request rules: conditions on method, host, path and client address; first match wins. */
#ifndef TUNNELGATE_RULES_H
#define TUNNELGATE_RULES_H

#include "config.h"

/* What a rule sees of a request. Strings need not be NUL-terminated. */
struct rule_input {
	const char *method;
	size_t method_len;
	const char *host;        /* without port; matched case-insensitively */
	size_t host_len;
	const char *path;        /* raw path (origin-form or absolute-form's path); NULL for CONNECT */
	size_t path_len;
	const struct sockaddr_any *client;
};

/* The first rule of @cfg whose conditions all hold, or NULL. */
const struct rule *rules_match(const struct config *cfg, const struct rule_input *in);

/*
 * Normalise a request path for matching, into @out (size @outlen, NUL-terminated):
 * percent-decode unreserved characters, resolve "." and ".." segments, collapse
 * repeated slashes, drop the query. Returns the length, or -ENOSPC / -EINVAL.
 */
int path_normalise(const char *path, size_t len, char *out, size_t outlen);

/* Parse "a.b.c.d/n" or "v6/n" (or a bare address: full length). Returns 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out);

/* True if @addr (AF_INET or AF_INET6) is inside @c. */
bool cidr_contains(const struct cidr *c, const struct sockaddr_any *addr);

#endif
