/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_CONFIG_INTERNAL_H
#define COLOFS_CONFIG_INTERNAL_H

/* Shared by the config's files only (fs/config*.c): the key tables, the
 * loader and the value types.  The parts:
 *   config.c         the loader: inih's reader and handler, sections,
 *                    errors, the checks at the end, load, free and dump
 *   config-values.c  value types any section uses
 *   config-daemon.c  [colofs]
 *   config-disk.c    [disk "NAME"]
 *   config-tls.c     TLS and access control of the NBD listener
 * A key is added in one place, the tables below, with its value type T,
 * which has config_parse_T (text -> field, or an error naming key, value
 * and what is allowed) and config_dump_T (field -> text that parse reads
 * back to the same value).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"

/* [colofs]: key, value type, field of struct config, default (NULL: none).
 * mountpoint is required; listen and buffer_dir are optional.
 */
#define COLOFS_KEYS(X)						\
	X(mountpoint,	path,	mountpoint,	NULL)		\
	X(mode,		cmode,	mode,		"secondary")	\
	X(listen,	listen,	listen,		NULL)		\
	X(buffer,	buffer,	buffer,		"memory")	\
	X(buffer_dir,	path,	buffer_dir,	NULL)		\
	X(buffer_limit,	size,	buffer_limit,	"0")		\
	X(buffer_warm,	size,	buffer_warm,	"0")		\
	X(allow_other,	bool,	allow_other,	"true")		\
	X(page_cache,	bool,	page_cache,	"false")		\
	X(write_behind,	size,	write_behind,	"8M")		\
	X(allow_chown,	bool,	allow_chown,	"true")		\
	X(metrics_file,	path,	metrics_file,	NULL)		\
	X(state_dir,	path,	state_dir,	"/var/lib/colofs")	\
	X(dirty_granularity, gran, dirty_granularity, "64K")		\
	X(secondary_timeout, msec, secondary_timeout_ms, "10s")	\
	X(activity_log_extent, gran, al_extent,	"4M")		\
	X(activity_log_extents, alcount, al_extents, "64")	\
	/* bounds of the NBD listener (doc/nbd.md, "Bounds") */	\
	X(max_connections, count, max_connections, "16")		\
	X(max_handshakes, count, max_handshakes, "128")		\
	X(max_handshakes_per_address, count, max_handshakes_per_address, "16") \
	X(io_timeout,	seconds, io_timeout,	"30")		\
	X(nbd_memory_limit, nbdmem, nbd_memory_limit, "256M")	\
	X(nbd_conn_memory_limit, nbdmem, nbd_conn_memory_limit, "64M")	\
	/* TLS and access control on the NBD listener (fs/nbd/nbd-tls.c).  tls	\
	 * has no default here: config_finish() makes it require when credentials	\
	 * are configured, off otherwise.					\
	 */								\
	X(tls,		tlsmode, tls,		NULL)		\
	X(tls_psk_file,	path,	tls_psk_file,	NULL)		\
	X(tls_certificates, path, tls_certificates, NULL)	\
	X(tls_verify_peer, bool, tls_verify_peer, "true")	\
	X(tls_authz,	authz,	tls_authz,	NULL)		\
	X(allow,	allow,	allow,		NULL)		\
	X(listen_mode,	perm,	listen_mode,	"0600")		\
	X(listen_group,	group,	listen_group,	NULL)

/* [disk "NAME"]: the same for struct config_disk.  image is required;
 * export defaults to NAME; owner and group are resolved to ids at the end.
 */
#define DISK_KEYS(X)						\
	X(image,	path,	image,		NULL)		\
	X(format,	format,	format,		"raw")		\
	X(export,	export,	export_name,	NULL)		\
	X(owner,	user,	owner,		"root")		\
	X(group,	user,	group,		"root")		\
	X(mode,		perm,	mode,		"0600")		\
	X(secondary,	uri,	secondary,	NULL)		\
	X(secondary_tls_psk_file, path, tls_psk_file, NULL)	\
	X(secondary_tls_username, name, tls_username, NULL)	\
	X(secondary_tls_certificates, path, tls_certificates, NULL)

enum colofs_key {
#define X(key, type, field, def) CK_##key,
	COLOFS_KEYS(X)
#undef X
	CK_COUNT
};

enum disk_key {
#define X(key, type, field, def) DK_##key,
	DISK_KEYS(X)
#undef X
	DK_COUNT
};

#define MAX_KEYS ((int) CK_COUNT > (int) DK_COUNT ? (int) CK_COUNT : (int) DK_COUNT)
_Static_assert(MAX_KEYS <= 64, "struct seen holds a 64-bit mask");
#define DISK_NAME_MAX 64
#define EXPORT_NAME_MAX 4096		/* the NBD protocol's limit */
#define CONFIG_FILE_MAX (1 << 20)

/* Which keys a section has set, and where. */
struct seen {
	uint64_t mask;			/* bit k: key k was set */
	int line[MAX_KEYS];
};

enum section {
	SECTION_NONE,		/* before the first header */
	SECTION_COLOFS,
	SECTION_DISK,
};

struct loader {
	const char *path;		/* for messages */
	const char *pos, *end;		/* the text not read yet */
	int lineno;			/* of the line last handed to inih */
	bool failed;
	int err_errno;			/* of the first error */
	char err[4096];			/* every error, one per line */
	int nerrs, last_err_line;
	bool skip_section;		/* its header was refused */
	struct config *c;
	enum section section;		/* the section being read */
	int colofs_line;		/* its header; 0: none yet */
	struct seen colofs_seen;
	struct seen *disk_seen;		/* one per c->disks[] */
	size_t disk_cap;
};

/* Records an error at line (0: none) and goes on; config.c. */
void config_fail(struct loader *ld, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* "bad value for KEY: 'VALUE' (ALLOWED)", at the current line. */
void config_bad_value(struct loader *ld, const char *key, const char *v,
		      const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Whether [colofs] set key k. */
#define COLOFS_SET(ld, k) (((ld)->colofs_seen.mask & (1u << CK_##k)) != 0)

void config_fail_errno(struct loader *ld, int line, int err, const char *what);
bool config_path_within(const char *path, const char *dir);
bool config_same_path(const char *a, const char *b);
int config_mark_seen(struct loader *ld, struct seen *seen, int k, const char *key,
		const char *section);

int config_set_string(struct loader *ld, char **out, const char *v);
void config_dump_string(FILE *fp, const char *key, const char *v);
int config_parse_path(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_path(FILE *fp, const char *key, char *const *v);
int config_parse_size(struct loader *ld, const char *key, const char *v, uint64_t *out);
void config_dump_size(FILE *fp, const char *key, const uint64_t *v);
int config_parse_name(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_name(FILE *fp, const char *key, char *const *v);
int config_parse_bool(struct loader *ld, const char *key, const char *v, bool *out);
void config_dump_bool(FILE *fp, const char *key, const bool *v);
int config_parse_user(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_user(FILE *fp, const char *key, char *const *v);
int config_parse_perm(struct loader *ld, const char *key, const char *v, mode_t *out);
void config_dump_perm(FILE *fp, const char *key, const mode_t *v);
int config_small_number(const char *v, unsigned long *n);
int config_parse_count(struct loader *ld, const char *key, const char *v, unsigned *out);
void config_dump_count(FILE *fp, const char *key, const unsigned *v);

int config_parse_cmode(struct loader *ld, const char *key, const char *v,
	    enum config_mode *out);
void config_dump_cmode(FILE *fp, const char *key, const enum config_mode *v);
int config_parse_listen(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_listen(FILE *fp, const char *key, char *const *v);
int config_parse_buffer(struct loader *ld, const char *key, const char *v,
	     enum config_buffer *out);
void config_dump_buffer(FILE *fp, const char *key, const enum config_buffer *v);
int config_parse_gran(struct loader *ld, const char *key, const char *v, uint64_t *out);
void config_dump_gran(FILE *fp, const char *key, const uint64_t *v);
int config_parse_msec(struct loader *ld, const char *key, const char *v, unsigned *out);
void config_dump_msec(FILE *fp, const char *key, const unsigned *v);
int config_parse_alcount(struct loader *ld, const char *key, const char *v,
	      unsigned *out);
void config_dump_alcount(FILE *fp, const char *key, const unsigned *v);
int config_parse_seconds(struct loader *ld, const char *key, const char *v,
	      unsigned *out);
void config_dump_seconds(FILE *fp, const char *key, const unsigned *v);
int config_parse_nbdmem(struct loader *ld, const char *key, const char *v, uint64_t *out);
void config_dump_nbdmem(FILE *fp, const char *key, const uint64_t *v);
int config_set_defaults_colofs(struct loader *ld, struct config *c);
int config_set_colofs_key(struct loader *ld, const char *name, const char *value);
int config_colofs_key_line(const struct loader *ld, int k);
int config_finish_colofs(struct loader *ld);

int config_parse_uri(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_uri(FILE *fp, const char *key, char *const *v);
int config_parse_format(struct loader *ld, const char *key, const char *v,
	     enum image_format *out);
void config_dump_format(FILE *fp, const char *key, const enum image_format *v);
int config_parse_export(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_export(FILE *fp, const char *key, char *const *v);
const char * config_disk_label(const struct config_disk *d, char *buf, size_t len);
bool config_disk_name_ok(const char *s, size_t len);
int config_open_disk(struct loader *ld, const char *name, size_t len);
int config_set_disk_key(struct loader *ld, const char *name, const char *value);
int config_lookup_id(struct loader *ld, int line, const char *label, const char *key,
		const char *name, bool group, unsigned *id);
int config_disk_key_line(const struct loader *ld, size_t i, int k);
int config_finish_disk(struct loader *ld, size_t i);
int config_check_secondary_keys(struct loader *ld, const struct config *c, size_t i,
		     const char *label);

int config_parse_tlsmode(struct loader *ld, const char *key, const char *v,
	      enum config_tls *out);
void config_dump_tlsmode(FILE *fp, const char *key, const enum config_tls *v);
int config_parse_authz(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_authz(FILE *fp, const char *key, char *const *v);
int config_parse_allow(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_allow(FILE *fp, const char *key, char *const *v);
int config_parse_group(struct loader *ld, const char *key, const char *v, char **out);
void config_dump_group(FILE *fp, const char *key, char *const *v);
int config_finish_tls(struct loader *ld);

#endif
