/* SPDX-License-Identifier: MIT */
/* The config's value types that any section uses: strings, paths, sizes,
 * booleans, counts, user names and modes.  Each type T has
 * config_parse_T and config_dump_T (config-internal.h says how).
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

/* ---- value types: parse_T and dump_T ---- */

int
config_set_string(struct loader *ld, char **out, const char *v)
{
	char *s = strdup(v);

	if (s == NULL) {
		config_fail_errno(ld, ld->lineno, errno, "out of memory");
		return -1;
	}
	free(*out);
	*out = s;
	return 0;
}

void
config_dump_string(FILE *fp, const char *key, const char *v)
{
	/* Keep the line within inih's limit even for the longest value that
	 * could have been read.
	 */
	if (strlen(key) + strlen(v) + 3 > (size_t) INI_MAX_LINE - 3)
		fprintf(fp, "%s=%s\n", key, v);
	else
		fprintf(fp, "%s = %s\n", key, v);
}

/* An absolute path: the daemon changes directory when it detaches. */
int
config_parse_path(struct loader *ld, const char *key, const char *v, char **out)
{
	if (v[0] != '/') {
		config_bad_value(ld, key, v, "an absolute path");
		return -1;
	}
	return config_set_string(ld, out, v);
}

void
config_dump_path(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		config_dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set\n", key);
}

/* Bytes, with an optional binary suffix K, M, G or T. */
int
config_parse_size(struct loader *ld, const char *key, const char *v, uint64_t *out)
{
	static const char suffixes[] = "KMGT";
	uint64_t n = 0, mult = 1;
	const char *p = v, *s;

	if (!isdigit((unsigned char) *p))
		goto bad;
	for (; isdigit((unsigned char) *p); p++) {
		if (n > (UINT64_MAX - (*p - '0')) / 10)
			goto big;
		n = n * 10 + (*p - '0');
	}
	if (*p != '\0') {
		s = strchr(suffixes, toupper((unsigned char) *p));
		if (s == NULL || p[1] != '\0')
			goto bad;
		mult = UINT64_C(1) << (10 * (s - suffixes + 1));
	}
	if (n > UINT64_MAX / mult)
		goto big;
	*out = n * mult;
	return 0;
bad:
	config_bad_value(ld, key, v, "bytes, with an optional suffix K, M, G or T");
	return -1;
big:
	config_bad_value(ld, key, v, "too large");
	return -1;
}

void
config_dump_size(FILE *fp, const char *key, const uint64_t *v)
{
	fprintf(fp, "%s = %" PRIu64 "\n", key, *v);
}

/* A name (the TLS PSK identity): printable, no spaces. */
int
config_parse_name(struct loader *ld, const char *key, const char *v, char **out)
{
	const char *p;

	if (*v == '\0' || strlen(v) > 255)
		goto bad;
	for (p = v; *p != '\0'; p++)
		if (!isgraph((unsigned char) *p))
			goto bad;
	return config_set_string(ld, out, v);
bad:
	config_bad_value(ld, key, v, "1 to 255 printable characters, no spaces");
	return -1;
}

void
config_dump_name(FILE *fp, const char *key, char *const *v)
{
	config_dump_path(fp, key, v);
}

int
config_parse_bool(struct loader *ld, const char *key, const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	config_bad_value(ld, key, v, "expected true, false, yes, no, on, off, 1 or 0");
	return -1;
}

void
config_dump_bool(FILE *fp, const char *key, const bool *v)
{
	fprintf(fp, "%s = %s\n", key, *v ? "true" : "false");
}

/* A user or group name, or a numeric id; looked up at the end. */
int
config_parse_user(struct loader *ld, const char *key, const char *v, char **out)
{
	const char *p;

	if (*v == '\0') {
		config_bad_value(ld, key, v, "a name or a numeric id");
		return -1;
	}
	for (p = v; *p != '\0'; p++) {
		if (isspace((unsigned char) *p) || *p == ':') {
			config_bad_value(ld, key, v, "a name or a numeric id");
			return -1;
		}
	}
	return config_set_string(ld, out, v);
}

void
config_dump_user(FILE *fp, const char *key, char *const *v)
{
	config_dump_string(fp, key, *v);
}

/* Permission bits in octal, 0 to 0777. */
int
config_parse_perm(struct loader *ld, const char *key, const char *v, mode_t *out)
{
	unsigned long m = 0;
	const char *p;

	if (*v == '\0' || strlen(v) > 4)
		goto bad;
	for (p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			goto bad;
		m = m * 8 + (*p - '0');
	}
	if (m > 0777)
		goto bad;
	*out = m;
	return 0;
bad:
	config_bad_value(ld, key, v, "octal permission bits 0 to 0777, e.g. 0600");
	return -1;
}

void
config_dump_perm(FILE *fp, const char *key, const mode_t *v)
{
	fprintf(fp, "%s = %04o\n", key, (unsigned) *v);
}

/* A decimal number of at most 5 digits in *n: 0, or -1. */
int
config_small_number(const char *v, unsigned long *n)
{
	const char *p;

	*n = 0;
	if (*v == '\0' || strlen(v) > 5)
		return -1;
	for (p = v; *p != '\0'; p++) {
		if (!isdigit((unsigned char) *p))
			return -1;
		*n = *n * 10 + (unsigned long) (*p - '0');
	}
	return 0;
}

/* A number of connections, 1 to CONFIG_MAX_COUNT. */
int
config_parse_count(struct loader *ld, const char *key, const char *v, unsigned *out)
{
	unsigned long n;

	if (config_small_number(v, &n) == -1 || n < 1 || n > CONFIG_MAX_COUNT)
		goto bad;
	*out = n;
	return 0;
bad:
	config_bad_value(ld, key, v, "a number from 1 to %d", CONFIG_MAX_COUNT);
	return -1;
}

void
config_dump_count(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %u\n", key, *v);
}
