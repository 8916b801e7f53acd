/* SPDX-License-Identifier: MIT */
/* TLS and access control on the NBD listener: tls, tls_*, tls_authz,
 * allow, listen_mode and listen_group, and the secure-by-default rule
 * that ties them (config_finish_tls).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <ini.h>

#include "al.h"
#include "config-internal.h"

const char *
config_tls_name(enum config_tls t)
{
	switch (t) {
	case CONFIG_TLS_OFF: return "off";
	case CONFIG_TLS_ON: return "on";
	case CONFIG_TLS_REQUIRE: return "require";
	}
	abort();
}

int
config_parse_tlsmode(struct loader *ld, const char *key, const char *v,
	      enum config_tls *out)
{
	if (strcmp(v, "off") == 0)
		*out = CONFIG_TLS_OFF;
	else if (strcmp(v, "on") == 0)
		*out = CONFIG_TLS_ON;
	else if (strcmp(v, "require") == 0)
		*out = CONFIG_TLS_REQUIRE;
	else {
		config_bad_value(ld, key, v, "expected off, on or require");
		return -1;
	}
	return 0;
}

void
config_dump_tlsmode(FILE *fp, const char *key, const enum config_tls *v)
{
	fprintf(fp, "%s = %s\n", key, config_tls_name(*v));
}

/* Splits s at sep into trimmed, non-empty items: calls item(ld, key, v,
 * text, len) for each.  The items are bounded by max.
 */
static int
split_list(struct loader *ld, const char *key, const char *v, char sep,
	   size_t max, int (*item)(struct loader *, const char *,
				   const char *, const char *, size_t))
{
	const char *p = v;
	size_t n = 0;

	for (;;) {
		const char *e = strchr(p, sep), *b = p;

		if (e == NULL)
			e = p + strlen(p);
		while (b < e && isspace((unsigned char) *b))
			b++;
		const char *t = e;

		while (t > b && isspace((unsigned char) t[-1]))
			t--;
		if (t == b) {
			config_bad_value(ld, key, v, "an empty item in the list");
			return -1;
		}
		if (++n > max) {
			config_bad_value(ld, key, v, "at most %zu items", max);
			return -1;
		}
		if (item(ld, key, v, b, (size_t) (t - b)) == -1)
			return -1;
		if (*e == '\0')
			return 0;
		p = e + 1;
	}
}

static int
authz_item(struct loader *ld, const char *key, const char *v,
	   const char *s, size_t len)
{
	struct config *c = ld->c;
	char **a, *dup;

	(void) key;
	(void) v;
	a = realloc(c->authz, (c->nauthz + 1) * sizeof *a);
	if (a == NULL)
		goto nomem;
	c->authz = a;
	dup = strndup(s, len);
	if (dup == NULL)
		goto nomem;
	c->authz[c->nauthz++] = dup;
	return 0;
nomem:
	config_fail_errno(ld, ld->lineno, errno, "out of memory");
	return -1;
}

/* PSK usernames or X.509 distinguished names ("CN=primary,O=Example"):
 * DNs hold commas, so the items are separated by '|'.
 */
int
config_parse_authz(struct loader *ld, const char *key, const char *v, char **out)
{
	if (split_list(ld, key, v, '|', CONFIG_AUTHZ_MAX, authz_item) == -1)
		return -1;
	return config_set_string(ld, out, v);
}

void
config_dump_authz(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		config_dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: any holder of valid credentials\n",
			key);
}

static int
allow_item(struct loader *ld, const char *key, const char *v,
	   const char *s, size_t len)
{
	struct config *c = ld->c;
	struct config_net *n = &c->allow_nets[c->nallow];
	char addr[INET6_ADDRSTRLEN + 8];
	const char *slash;
	size_t alen;
	unsigned max;

	if (len >= sizeof addr) {
		config_bad_value(ld, key, v, "'%.*s' is not ADDR[/BITS]", (int) len, s);
		return -1;
	}
	slash = memchr(s, '/', len);
	alen = slash != NULL ? (size_t) (slash - s) : len;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, n->addr) == 1) {
		n->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, n->addr) == 1) {
		n->family = AF_INET6;
		max = 128;
	} else {
		config_bad_value(ld, key, v, "'%s' is not an IPv4 or IPv6 address",
			  addr);
		return -1;
	}
	n->bits = max;
	if (slash != NULL) {
		const char *b = slash + 1, *e = s + len;
		unsigned bits = 0;

		if (b == e || e - b > 3)
			goto badbits;
		for (; b < e; b++) {
			if (!isdigit((unsigned char) *b))
				goto badbits;
			bits = bits * 10 + (*b - '0');
		}
		if (bits > max)
			goto badbits;
		n->bits = bits;
	}
	c->nallow++;
	return 0;
badbits:
	config_bad_value(ld, key, v, "'%.*s': the prefix length must be 0 to %u",
		  (int) len, s, max);
	return -1;
}

/* ADDR[/BITS], ... : the TCP clients the listener accepts. */
int
config_parse_allow(struct loader *ld, const char *key, const char *v, char **out)
{
	if (split_list(ld, key, v, ',', CONFIG_ALLOW_MAX, allow_item) == -1)
		return -1;
	return config_set_string(ld, out, v);
}

void
config_dump_allow(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		config_dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: every address\n", key);
}

/* An optional group (name or id), resolved at the end. */
int
config_parse_group(struct loader *ld, const char *key, const char *v, char **out)
{
	return config_parse_user(ld, key, v, out);
}

void
config_dump_group(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		config_dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: the daemon's group\n", key);
}

/* Is host, as written in listen, a loopback address?  Names other than
 * localhost count as not: what they resolve to can change.
 */
static bool
host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

/* TLS, allow and the unix socket's mode: the checks between keys, and
 * the secure-by-default rule.
 */
int
config_finish_tls(struct loader *ld)
{
	struct config *c = ld->c;
	bool creds = c->tls_psk_file != NULL || c->tls_certificates != NULL;
	enum config_listen_kind kind = c->listen_addr.kind;
	unsigned id;

	if (!COLOFS_SET(ld, tls))
		c->tls = creds ? CONFIG_TLS_REQUIRE : CONFIG_TLS_OFF;
	if (c->tls != CONFIG_TLS_OFF && !creds) {
		config_fail(ld, config_colofs_key_line(ld, CK_tls),
		     "tls = %s needs tls_psk_file or tls_certificates",
		     config_tls_name(c->tls));
		return -1;
	}
	if (c->tls_authz != NULL && c->tls == CONFIG_TLS_OFF) {
		config_fail(ld, config_colofs_key_line(ld, CK_tls_authz),
		     "tls_authz needs TLS (tls_psk_file or tls_certificates, and tls not off)");
		return -1;
	}
	if (c->tls_authz != NULL && c->tls == CONFIG_TLS_ON) {
		/* A plaintext client has no identity to check. */
		config_fail(ld, config_colofs_key_line(ld, CK_tls_authz),
		     "tls_authz needs tls = require (with tls = on a plaintext client bypasses it)");
		return -1;
	}
	if (c->allow != NULL && kind != CONFIG_LISTEN_TCP) {
		config_fail(ld, config_colofs_key_line(ld, CK_allow),
		     "allow needs a TCP listen (HOST:PORT)");
		return -1;
	}
	/* listen_mode's default is dumped for every config: only a value
	 * that would change something is an error without a unix socket.
	 */
	if (((COLOFS_SET(ld, listen_mode) && c->listen_mode != 0600) ||
	     COLOFS_SET(ld, listen_group)) && kind != CONFIG_LISTEN_UNIX) {
		config_fail(ld, config_colofs_key_line(ld, COLOFS_SET(ld, listen_group) ?
					 CK_listen_group : CK_listen_mode),
		     "listen_mode and listen_group need listen = unix:/PATH");
		return -1;
	}
	c->listen_gid = (gid_t) -1;
	if (c->listen_group != NULL) {
		if (config_lookup_id(ld, config_colofs_key_line(ld, CK_listen_group),
			      "[colofs]", "listen_group", c->listen_group,
			      true, &id) == -1)
			return -1;
		c->listen_gid = id;
	}
	/* Secure by default: whoever reaches a listener without TLS reads
	 * and writes the disks.  Only loopback (and the 0600 unix socket)
	 * goes without credentials, unless the file says tls = off.
	 */
	if (kind == CONFIG_LISTEN_TCP && c->tls == CONFIG_TLS_OFF &&
	    !COLOFS_SET(ld, tls) && !host_is_loopback(c->listen_addr.host)) {
		config_fail(ld, config_colofs_key_line(ld, CK_listen),
		     "listen = %s is not a loopback address and no TLS credentials are set: anyone who can reach it could read and overwrite the disks; set tls_psk_file or tls_certificates (and allow), or write tls = off to accept that risk",
		     c->listen);
		return -1;
	}
	return 0;
}
