/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_CONFIG_H
#define COLOFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "image.h"

/* The deployment file (INI, parsed with inih):
 *
 *   [colofs]
 *   mountpoint = /var/lib/colofs/vm1   ; required
 *   mode = secondary                   ; secondary | primary (doc/primary.md)
 *   listen = unix:/run/colofs/vm1.sock ; or HOST:PORT, [v6]:PORT
 *   buffer = memory                    ; memory | file
 *   buffer_dir = /var/lib/colofs/buf   ; required for buffer = file or qcow2
 *   buffer_limit = 0                   ; bytes (K/M/G suffixes), 0 = none
 *   buffer_warm = 0                    ; memory each buffer keeps faulted in
 *   allow_other = true                 ; let other users open the disks
 *   page_cache = false                 ; let the kernel cache disk files
 *   write_behind = 8M                  ; start S's writeback every 8M, 0 = off
 *   allow_chown = true                 ; chown/chmod of disk files (memory)
 *   metrics_file = /var/lib/...prom    ; OpenMetrics, rewritten every 5 s
 *   state_dir = /var/lib/colofs        ; state file, journals, bitmaps
 *   dirty_granularity = 64K            ; primary: the dirty bitmap's granule
 *   secondary_timeout = 10s            ; primary: a slower write degrades
 *   activity_log_extent = 4M           ; primary: the activity log's extent
 *   activity_log_extents = 64          ; primary: extents active at most
 *   max_connections = 16               ; NBD: authenticated, per export
 *   max_handshakes = 128               ; NBD: unauthenticated, in all
 *   max_handshakes_per_address = 16    ; NBD: the same, from one address
 *   io_timeout = 30                    ; NBD: a stalled payload or reply
 *   nbd_memory_limit = 256M            ; NBD: payload bytes, all clients
 *   nbd_conn_memory_limit = 64M        ; NBD: the same, per connection
 *   tls = require                      ; off | on | require (see below)
 *   tls_psk_file = /etc/colofs/keys.psk ; psktool's username:hexkey lines
 *   tls_certificates = /etc/colofs/pki ; ca-cert.pem, server-cert.pem, ...
 *   tls_verify_peer = true             ; clients need a CA-signed cert
 *   tls_authz = qemu | CN=primary      ; identities allowed, '|' between
 *   allow = 192.0.2.0/24, ::1          ; TCP clients allowed (default all)
 *   listen_mode = 0600                 ; unix socket's permission bits
 *   listen_group = kvm                 ; unix socket's group
 *   [disk "vda"]                       ; one per disk
 *   image = /var/lib/libvirt/images/vm1.raw
 *   format = raw                       ; raw | qcow2; probed when absent
 *   export = vda                       ; NBD export, default the name
 *   owner = root                       ; the disk file's owner (name or id)
 *   group = root                       ; its group (name or id)
 *   mode = 0600                        ; its permission bits (octal)
 *   secondary = nbd://HOST:PORT/vda    ; primary: where writes are mirrored
 *   secondary_tls_psk_file = /etc/colofs/psk ; or secondary_tls_certificates
 *   secondary_tls_username = colofs    ; the PSK identity
 */
enum config_mode {
	CONFIG_MODE_SECONDARY,
	CONFIG_MODE_PRIMARY,
};
const char *config_mode_name(enum config_mode m);	/* aborts if unknown */

enum config_buffer {
	CONFIG_BUFFER_MEMORY,
	CONFIG_BUFFER_FILE,
};
const char *config_buffer_name(enum config_buffer b);	/* aborts if unknown */

/* Where the NBD listener listens, parsed and checked once here: the
 * listener binds it as it is.
 */
enum config_listen_kind {
	CONFIG_LISTEN_NONE,
	CONFIG_LISTEN_UNIX,
	CONFIG_LISTEN_TCP,
};

struct config_listen {
	enum config_listen_kind kind;
	char path[108];			/* UNIX: an absolute socket path */
	char host[256];			/* TCP: a name, IPv4 or IPv6 address */
	char port[6];			/* TCP: 1 to 65535, in decimal */
};

#define CONFIG_MAX_COUNT	1024
#define CONFIG_MIN_NBD_MEMORY	(UINT64_C(32) << 20)
/* tls: off, on (STARTTLS offered, plaintext allowed) or require.  Unset,
 * it is require when tls_psk_file or tls_certificates is set, else off;
 * a TCP listen on a non-loopback address with tls off is refused unless
 * the file says tls = off itself (secure by default).
 */
enum config_tls {
	CONFIG_TLS_OFF,
	CONFIG_TLS_ON,
	CONFIG_TLS_REQUIRE,
};
const char *config_tls_name(enum config_tls t);	/* aborts if unknown */

/* One entry of allow: an address and a prefix length. */
struct config_net {
	int family;			/* AF_INET or AF_INET6 */
	uint8_t addr[16];		/* network order, 4 bytes for AF_INET */
	unsigned bits;			/* 0 to 32 or 128 */
};
#define CONFIG_ALLOW_MAX 64
#define CONFIG_AUTHZ_MAX 64

struct config_disk {
	char *name;
	char *image;
	enum image_format format;	/* default raw; AUTO: probe */
	char *export_name;		/* defaults to name */
	char *owner, *group;		/* as written, default "root" */
	uid_t uid;			/* resolved at load */
	gid_t gid;
	mode_t mode;			/* default 0600 */
	char *secondary;		/* primary: the secondary's URI */
	char *tls_psk_file;		/* primary: TLS client credentials, */
	char *tls_username;		/* each NULL unless set */
	char *tls_certificates;
	int line;			/* of the section header */
};

struct config {
	char *path;			/* the file it was read from */
	char *mountpoint;
	enum config_mode mode;
	char *listen;			/* as written; NULL: no NBD listener */
	struct config_listen listen_addr;	/* the same, parsed */
	enum config_buffer buffer;
	char *buffer_dir;		/* NULL unless set */
	uint64_t buffer_limit;		/* 0 = unlimited */
	uint64_t buffer_warm;		/* bytes each memory buffer keeps
					 * faulted in from the start; 0: none */
	bool allow_other;
	bool page_cache;		/* kernel page cache for disk files */
	uint64_t write_behind;		/* secondary: bytes between S's
					 * writeback starts; 0: off */
	bool allow_chown;		/* disk files' chown/chmod kept in memory */
	char *metrics_file;		/* NULL unless set */
	char *state_dir;		/* state file, failover journals, bitmaps */
	uint64_t dirty_granularity;	/* primary: bytes per dirty bit */
	unsigned secondary_timeout_ms;	/* primary: link write timeout */
	uint64_t al_extent;		/* primary: activity log extent bytes */
	unsigned al_extents;		/* primary: active at most; 0: no log */
	/* bounds of the NBD listener */
	unsigned max_connections;	/* 1..CONFIG_MAX_COUNT */
	unsigned max_handshakes;	/* 1..CONFIG_MAX_COUNT */
	unsigned max_handshakes_per_address;	/* the same, from one TCP
						 * address (unix: not counted) */
	unsigned io_timeout;		/* seconds; 0: none */
	uint64_t nbd_memory_limit;	/* >= CONFIG_MIN_NBD_MEMORY */
	uint64_t nbd_conn_memory_limit;	/* the same, <= nbd_memory_limit */
	/* TLS and access control (doc/colofs.ini.5.md) */
	enum config_tls tls;
	char *tls_psk_file;		/* NULL unless set */
	char *tls_certificates;		/* a directory; NULL unless set */
	bool tls_verify_peer;
	char *tls_authz;		/* as written; NULL: any identity */
	char **authz;			/* the same, split and trimmed */
	size_t nauthz;
	char *allow;			/* as written; NULL: every address */
	struct config_net allow_nets[CONFIG_ALLOW_MAX];
	size_t nallow;
	mode_t listen_mode;		/* unix socket, default 0600 */
	char *listen_group;		/* unix socket's group; NULL: ours */
	gid_t listen_gid;		/* resolved; (gid_t)-1 when unset */
	size_t ndisks;
	struct config_disk *disks;
};

/* Reads and validates path.  NULL on failure, with errno set and a
 * message "PATH:LINE: reason" (or "PATH: reason") in err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
/* The same from a string, for tests; name stands in for the path. */
struct config *config_load_string(const char *text, const char *name,
				  char *err, size_t errlen);
void config_free(struct config *c);	/* NULL is a no-op */

/* Prints the effective config, defaults included, as a valid INI file. */
void config_dump(const struct config *c, FILE *fp);

#endif
