/* SPDX-License-Identifier: MIT */
/* [disk "NAME"]: opening a disk section, its keys (image, format,
 * export, owner, the primary's secondary* keys), their value types and
 * the checks that span a disk's keys and the disks.
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

/* The secondary's NBD URI, as libnbd reads it (checked by libnbd at
 * start; only the scheme here).
 */
int
config_parse_uri(struct loader *ld, const char *key, const char *v, char **out)
{
	static const char *const schemes[] = {
		"nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
	};
	const char *p;
	size_t i;

	for (p = v; *p != '\0'; p++) {
		if (iscntrl((unsigned char) *p) || isspace((unsigned char) *p)) {
			config_bad_value(ld, key, v, "no spaces or control characters");
			return -1;
		}
	}
	for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (strncmp(v, schemes[i], strlen(schemes[i])) == 0)
			return config_set_string(ld, out, v);
	config_bad_value(ld, key, v, "an NBD URI: nbd://HOST:PORT/EXPORT, nbds://..., "
		  "nbd+unix:///EXPORT?socket=PATH");
	return -1;
}

void
config_dump_uri(FILE *fp, const char *key, char *const *v)
{
	config_dump_path(fp, key, v);
}

int
config_parse_format(struct loader *ld, const char *key, const char *v,
	     enum image_format *out)
{
	if (image_format_parse(v, out) == -1) {
		config_bad_value(ld, key, v, "expected raw, qcow2 or auto");
		return -1;
	}
	return 0;
}

void
config_dump_format(FILE *fp, const char *key, const enum image_format *v)
{
	fprintf(fp, "%s = %s\n", key, image_format_name(*v));
}

int
config_parse_export(struct loader *ld, const char *key, const char *v, char **out)
{
	const char *p;

	if (*v == '\0' || strlen(v) > EXPORT_NAME_MAX) {
		config_bad_value(ld, key, v, "1 to %d bytes", EXPORT_NAME_MAX);
		return -1;
	}
	for (p = v; *p != '\0'; p++) {
		if (iscntrl((unsigned char) *p)) {
			config_bad_value(ld, key, v, "no control characters");
			return -1;
		}
	}
	return config_set_string(ld, out, v);
}

void
config_dump_export(FILE *fp, const char *key, char *const *v)
{
	config_dump_string(fp, key, *v);
}

/* ---- sections ---- */

const char *
config_disk_label(const struct config_disk *d, char *buf, size_t len)
{
	snprintf(buf, len, "[disk \"%s\"]", d->name);
	return buf;
}

static int
set_defaults_disk(struct loader *ld, struct config_disk *d)
{
	int r = 0;

#define X(key, type, field, def)					\
	if ((def) != NULL && r == 0)					\
		r = config_parse_##type(ld, #key, (def) != NULL ? (def) : "",	\
				 &d->field);
	DISK_KEYS(X)
#undef X
	return r;
}

/* A disk name becomes a file name and an NBD export: [A-Za-z0-9._-],
 * 1 to 64 characters, not starting with '.'.
 */
bool
config_disk_name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > DISK_NAME_MAX || s[0] == '.')
		return false;
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char) s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	}
	return true;
}

int
config_open_disk(struct loader *ld, const char *name, size_t len)
{
	struct config *c = ld->c;
	struct config_disk *d;
	size_t i;

	for (i = 0; i < c->ndisks; i++) {
		if (strlen(c->disks[i].name) == len &&
		    memcmp(c->disks[i].name, name, len) == 0) {
			config_fail(ld, ld->lineno,
			     "duplicate disk [disk \"%.*s\"] (first on line %d)",
			     (int) len, name, c->disks[i].line);
			return -1;
		}
	}
	if (c->ndisks == ld->disk_cap) {
		size_t cap = ld->disk_cap ? 2 * ld->disk_cap : 4;
		struct config_disk *disks;
		struct seen *seen;

		disks = realloc(c->disks, cap * sizeof *disks);
		if (disks == NULL)
			goto nomem;
		c->disks = disks;
		seen = realloc(ld->disk_seen, cap * sizeof *seen);
		if (seen == NULL)
			goto nomem;
		ld->disk_seen = seen;
		ld->disk_cap = cap;
	}
	d = &c->disks[c->ndisks];
	memset(d, 0, sizeof *d);
	memset(&ld->disk_seen[c->ndisks], 0, sizeof ld->disk_seen[0]);
	c->ndisks++;
	d->line = ld->lineno;
	d->name = strndup(name, len);
	if (d->name == NULL)
		goto nomem;
	return set_defaults_disk(ld, d);
nomem:
	config_fail_errno(ld, ld->lineno, errno, "out of memory");
	return -1;
}

int
config_set_disk_key(struct loader *ld, const char *name, const char *value)
{
	struct config_disk *d = &ld->c->disks[ld->c->ndisks - 1];
	struct seen *seen = &ld->disk_seen[ld->c->ndisks - 1];
	char label[DISK_NAME_MAX + 16];

	config_disk_label(d, label, sizeof label);
#define X(key, type, field, def)					\
	if (strcmp(name, #key) == 0) {					\
		if (config_mark_seen(ld, seen, DK_##key, name, label) == -1)	\
			return -1;					\
		return config_parse_##type(ld, #key, value, &d->field);	\
	}
	DISK_KEYS(X)
#undef X
	config_fail(ld, ld->lineno, "unknown key '%s' in %s", name, label);
	return -1;
}

/* ---- cross-key checks ---- */

int
config_lookup_id(struct loader *ld, int line, const char *label, const char *key,
	  const char *name, bool group, unsigned *id)
{
	char *buf = NULL, *end;
	size_t buflen = 1024;
	unsigned long n;
	int r;

	errno = 0;
	n = strtoul(name, &end, 10);
	if (isdigit((unsigned char) name[0]) && *end == '\0') {
		if (errno != 0 || n >= (unsigned long) (uid_t) -1) {
			config_fail(ld, line, "%s: %s id %s is out of range",
			     label, key, name);
			return -1;
		}
		*id = n;
		return 0;
	}
	for (;;) {
		struct passwd pw, *pwp = NULL;
		struct group gr, *grp = NULL;
		char *nbuf = realloc(buf, buflen);

		if (nbuf == NULL) {
			free(buf);
			config_fail_errno(ld, line, errno, "out of memory");
			return -1;
		}
		buf = nbuf;
		if (group) {
			r = getgrnam_r(name, &gr, buf, buflen, &grp);
			if (r == 0 && grp != NULL)
				*id = grp->gr_gid;
		} else {
			r = getpwnam_r(name, &pw, buf, buflen, &pwp);
			if (r == 0 && pwp != NULL)
				*id = pwp->pw_uid;
		}
		if (r == ERANGE && buflen < (UINT64_C(1) << 20)) {
			buflen *= 2;
			continue;
		}
		free(buf);
		if (r != 0) {
			config_fail(ld, line, "%s: cannot look up %s '%s': %s",
			     label, key, name, strerror(r));
			return -1;
		}
		if (group ? grp == NULL : pwp == NULL) {
			config_fail(ld, line, "%s: unknown %s '%s' for %s", label,
			     group ? "group" : "user", name, key);
			return -1;
		}
		return 0;
	}
}

/* The line to blame for a disk key: where it was set, else the header. */
int
config_disk_key_line(const struct loader *ld, size_t i, int k)
{
	const struct seen *seen = &ld->disk_seen[i];

	return seen->mask & (UINT64_C(1) << k) ? seen->line[k] : ld->c->disks[i].line;
}

/* A primary's disk needs its secondary; TLS credentials need a TLS
 * scheme (libnbd disables TLS for nbd:// and nbd+unix://), and one kind
 * of credentials only.  A secondary has no use for any of it.
 */
int
config_check_secondary_keys(struct loader *ld, const struct config *c, size_t i,
		     const char *label)
{
	const struct config_disk *d = &c->disks[i];
	bool creds = d->tls_psk_file != NULL || d->tls_certificates != NULL;

	if (c->mode != CONFIG_MODE_PRIMARY) {
		if (d->secondary != NULL || creds || d->tls_username != NULL) {
			config_fail(ld, d->line, "%s: the secondary* keys are for "
			     "mode = primary", label);
			return -1;
		}
		return 0;
	}
	if (d->secondary == NULL) {
		config_fail(ld, d->line, "%s: mode = primary needs secondary = URI",
		     label);
		return -1;
	}
	if (d->tls_psk_file != NULL && d->tls_certificates != NULL) {
		config_fail(ld, config_disk_key_line(ld, i, DK_secondary_tls_certificates),
		     "%s: secondary_tls_psk_file and "
		     "secondary_tls_certificates exclude each other", label);
		return -1;
	}
	if (creds && strncmp(d->secondary, "nbds", 4) != 0) {
		config_fail(ld, config_disk_key_line(ld, i, DK_secondary),
		     "%s: TLS credentials need an nbds:// or nbds+unix:// "
		     "secondary URI", label);
		return -1;
	}
	if (d->tls_username != NULL && d->tls_psk_file == NULL) {
		config_fail(ld, config_disk_key_line(ld, i, DK_secondary_tls_username),
		     "%s: secondary_tls_username goes with "
		     "secondary_tls_psk_file", label);
		return -1;
	}
	return 0;
}

/* The checks of disk i: required keys, its image against the mount and
 * the disks before it, ids, the export name.  At the end.
 */
int
config_finish_disk(struct loader *ld, size_t i)
{
	struct config *c = ld->c;
	size_t j;
	struct config_disk *d = &c->disks[i];
	char label[DISK_NAME_MAX + 16];
	unsigned id;

	config_disk_label(d, label, sizeof label);
	if (!(ld->disk_seen[i].mask & (UINT64_C(1) << DK_image))) {
		config_fail(ld, d->line, "%s image is required", label);
		return -1;
	}
	if (config_check_secondary_keys(ld, c, i, label) == -1)
		return -1;
	/* Strictly inside: an image that is the mountpoint itself
	 * fails the daemon's "not a directory" check.
	 */
	if (config_path_within(d->image, c->mountpoint) &&
	    !config_same_path(d->image, c->mountpoint)) {
		config_fail(ld, config_disk_key_line(ld, i, DK_image),
		     "%s image %s is inside mountpoint %s", label,
		     d->image, c->mountpoint);
		return -1;
	}
	for (j = 0; j < i; j++) {
		if (config_same_path(c->disks[j].image, d->image)) {
			config_fail(ld, config_disk_key_line(ld, i, DK_image),
			     "%s image %s is already used by [disk \"%s\"] (line %d)",
			     label, d->image, c->disks[j].name,
			     c->disks[j].line);
			return -1;
		}
	}
	if (d->format == IMAGE_FORMAT_QCOW2 && c->buffer_dir == NULL) {
		config_fail(ld, config_disk_key_line(ld, i, DK_format),
		     "%s format = qcow2 needs buffer_dir in [colofs] (for its overlay)",
		     label);
		return -1;
	}
	if (config_lookup_id(ld, config_disk_key_line(ld, i, DK_owner), label,
		      "owner", d->owner, false, &id) == -1)
		return -1;
	d->uid = id;
	if (config_lookup_id(ld, config_disk_key_line(ld, i, DK_group), label,
		      "group", d->group, true, &id) == -1)
		return -1;
	d->gid = id;
	if (d->export_name == NULL &&
	    (d->export_name = strdup(d->name)) == NULL) {
		config_fail_errno(ld, d->line, errno, "out of memory");
		return -1;
	}
	for (j = 0; j < i; j++) {
		if (strcmp(c->disks[j].export_name, d->export_name) == 0) {
			config_fail(ld, config_disk_key_line(ld, i, DK_export),
			     "%s: export name '%s' is already used by [disk \"%s\"] (line %d)",
			     label, d->export_name, c->disks[j].name,
			     c->disks[j].line);
			return -1;
		}
	}
	return 0;
}
