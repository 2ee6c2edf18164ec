/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * HAProxy's PROXY protocol (v1 text line, v2 binary header): the header a load balancer
 * puts in front of a TCP stream to pass on the client's address, built for upstreams
 * (send_proxy) and parsed from clients (accept_proxy).
 */
#ifndef TUNNELGATE_PROXY_PROTO_H
#define TUNNELGATE_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "addr.h"

/* The longest v1 line the spec allows, CRLF included. */
#ifndef PROXY_V1_MAX
#define PROXY_V1_MAX 107
#endif

/* The largest v2 length field accepted: addresses plus TLVs after the 16 fixed bytes. */
#ifndef PROXY_V2_MAX_LEN
#define PROXY_V2_MAX_LEN 1024
#endif

/* The fixed part of a v2 header: signature, version/command, family/protocol, length. */
#define PROXY_V2_FIXED 16

/* The longest header proxy_parse() accepts: a read buffer this big always suffices. */
#define PROXY_MAX_HEADER (PROXY_V2_FIXED + PROXY_V2_MAX_LEN)

/* The longest header proxy_build() writes (a v1 TCP6 line is at most 104 bytes). */
#define PROXY_BUILD_MAX 108

struct proxy_info {
	/* LOCAL command (v2) or UNKNOWN (v1): no addresses, keep the socket's own */
	bool local;
	/* when !local: both AF_INET or both AF_INET6, as sent (IPv4-mapped stays IPv6) */
	struct sockaddr_any src, dst;
};

/*
 * Build the PROXY header, @version 1 or 2, for a TCP connection from @src to @dst into
 * @out. Returns its length (at most PROXY_BUILD_MAX), -ENOSPC when @len is too short
 * (nothing written), -EAFNOSUPPORT for a family other than IPv4/IPv6 or, in v1, for
 * an IPv4 and an IPv6 address together (v2 writes both as IPv6, IPv4-mapped), or
 * -EINVAL for another version.
 */
ssize_t proxy_build(int version, const struct sockaddr_any *src, const struct sockaddr_any *dst,
		    char *out, size_t len);

/*
 * Parse a PROXY v1 or v2 header at the start of @buf[0..len); never reads past @len.
 * Returns the header's length (> 0, at most PROXY_MAX_HEADER) with @info filled;
 * 0 when the bytes so far are a valid beginning of a header and more are needed; or
 * -EINVAL when no continuation can make them a valid header. @info is written only on
 * success. A v1 line is strict (single spaces, ports 0..65535 without leading zeros,
 * addresses of the named family); "UNKNOWN" may be followed by anything up to CRLF.
 * v2 accepts LOCAL with any family and PROXY over TCP (INET/INET6 + STREAM) only;
 * TLVs are skipped but must fill the length exactly.
 */
ssize_t proxy_parse(const char *buf, size_t len, struct proxy_info *info);

#endif
