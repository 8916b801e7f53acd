/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_HOLDER_H
#define COLOFS_HOLDER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "handover.h"

/* The holder's half of live restart; handover.h has the picture. */

/* ---- holder side ---- */

/* Runs the holder for cfg: mounts, binds the listener, starts argv (this
 * binary, found again by its path) as the worker and keeps it running.
 * Returns the process's exit status.  Call it after daemon_start, before
 * any thread exists.
 */
int holder_main(const struct config *cfg, bool foreground, char **argv);

/* systemd: the sd_notify datagram that puts n fds in the service's fd
 * store under name ("FDSTORE=1\nFDNAME=fuse\n"), into buf.  Its length,
 * or -1 (EINVAL: a name systemd refuses; ENOSPC).
 */
int sd_fdstore_msg(char *buf, size_t size, const char *name);
/* Sends it with the fd (SCM_RIGHTS) to $NOTIFY_SOCKET.  0; 1 when there
 * is no NOTIFY_SOCKET; -1 with errno.
 */
int sd_fdstore(int fd, const char *name);

#endif
