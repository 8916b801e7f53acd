/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_NBD_H
#define COLOFS_NBD_H

#include <stdio.h>

#include "config.h"
#include "secondary.h"

/* The built-in NBD listener: the primary's way in.  Each disk of the
 * config is one export (config_disk.export_name); every request works on
 * the disk's secondary side through secondary_primary_*().
 */
struct nbd_server;

/* Binds cfg->listen_addr, which config_load parsed and checked.  NULL with errno,
 * after logging why.  Serves nothing until nbd_server_start.
 */
struct nbd_server *nbd_server_new(struct secondary *r, const struct config *cfg);
/* Adds fn's text (the generation identifiers, fs/durable.c) to every
 * export's description, after the fixed one and a blank.  Call before
 * nbd_server_start.
 */
typedef void nbd_describe_fn(void *opaque, char *buf, size_t len);
void nbd_server_set_describe(struct nbd_server *srv, nbd_describe_fn *fn,
			     void *opaque);
/* Starts accepting in a thread of its own.  0, or -1 with errno. */
int nbd_server_start(struct nbd_server *srv);
/* Stops accepting, lets in-flight requests finish, closes every
 * connection, joins its threads and frees.  NULL is a no-op.
 */
void nbd_server_free(struct nbd_server *srv);
/* SIGHUP: reads the TLS credentials again.  New handshakes use them;
 * established sessions keep theirs.  On failure (logged) the credentials
 * in use stay: -1 with errno.
 */
int nbd_server_reload(struct nbd_server *srv);
/* --check-config: loads the TLS credentials cfg names, as the server
 * would, and frees them.  0, or -1 after logging what is wrong.
 */
int nbd_tls_check(const struct config *cfg);
/* key=value lines for .colo/status ("nbd.connections=1"); srv is a
 * struct nbd_server, so that this is a colo_status_fn.
 */
void nbd_server_status(void *srv, FILE *fp);

/* Binds and listens on cfg's listen address, as the server would: for a
 * holder (holder.c), which hands the socket to its workers.  fd, or -1
 * after logging why.
 */
int nbd_listen_bind(const struct config *cfg);

#endif
