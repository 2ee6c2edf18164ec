/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Request rules: conditions on method, host, path and client address; first match wins. */
#ifndef TUNNELGATE_RULES_H
#define TUNNELGATE_RULES_H

#include "config.h"

/* What a rule sees of a request. Strings need not be NUL-terminated. */
struct rule_input {
	const char *method;
	size_t method_len;
	const char *host;        /* without port or brackets; compared in canonical form */
	size_t host_len;
	const char *path;        /* raw path (origin-form or absolute-form's path); NULL for CONNECT */
	size_t path_len;
	const struct sockaddr_any *client;
	const struct sockaddr_any *dest; /* the target's address; NULL if not known */
};

/*
 * The first rule of @cfg whose conditions all hold, in *@rule (NULL if none).
 * Returns 0; -EILSEQ or -ERANGE when a rule's decision depends on a path that has
 * no canonical form (see path_canonical(): answer 400, path_strerror() says why);
 * -ENOMEM. On error *@rule is NULL.
 */
int rules_match(const struct config *cfg, const struct rule_input *in, const struct rule **rule);

/*
 * The canonical form of a request path, into @out (size @outlen, NUL-terminated), so
 * that every spelling an origin server could map to one resource compares equal:
 * the query and fragment are dropped; percent-escapes are decoded until none is left
 * (%2F, %5C and %252F included); '\' is '/'; each segment loses its ";params";
 * empty, "." and ".." segments are resolved. A decoded '?' or '#' is written back as
 * %3F / %23, so that the result is its own canonical form. Case is kept (rules fold
 * it when comparing). @out needs @len + 1 bytes (2 for an empty path).
 * Returns the length, or -EINVAL (not a path: does not start with '/'), -EILSEQ (a
 * '%' not followed by two hex digits is left after decoding), -ERANGE (a NUL byte,
 * raw or decoded), -ENOSPC.
 */
int path_canonical(const char *path, size_t len, char *out, size_t outlen);

/* Why path_canonical() or rules_match() refused a path (-EILSEQ, -ERANGE, ...): for a reply. */
const char *path_strerror(int err);

/* Room host_canonical() needs at least, whatever the host. */
#define HOST_CANONICAL_MIN 64

/*
 * The canonical form of a host (name or IP literal, no port; IPv6 with or without
 * brackets) into @out (size @outlen >= @len + 1 and >= HOST_CANONICAL_MIN):
 * lower case, trailing dots removed; an IPv4 address in any inet_aton() spelling
 * (127.1, 2130706433, 0x7f.1, 0177.0.0.1) as a dotted quad; an IPv6 address as
 * inet_ntop() prints it, an IPv4-mapped one (::ffff:a.b.c.d) as its IPv4 address.
 * Returns the length, or -ENOSPC.
 */
int host_canonical(const char *host, size_t len, char *out, size_t outlen);

/* Parse "a.b.c.d/n" or "v6/n" (or a bare address: full length). Returns 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out);

/* True if @addr (AF_INET or AF_INET6) is inside @c. */
bool cidr_contains(const struct cidr *c, const struct sockaddr_any *addr);

#endif
