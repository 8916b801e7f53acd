/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FUSEFS_H
#define COLOFS_FUSEFS_H

#include <stdbool.h>

#include "colo.h"
#include "config.h"
#include "secondary.h"

struct fusefs;

/* Creates the FUSE session for cfg's disks and mounts it on
 * cfg->mountpoint (which must be an existing directory that is not a mount
 * point yet).  Installs the SIGTERM/SIGINT/SIGHUP handlers that end
 * fusefs_run.  parts[] (which may be empty) add their lines to
 * .colo/status; the array must outlive the file system.  NULL with
 * errno after logging why; nothing is mounted then.
 */
struct fusefs *fusefs_new(const struct config *cfg, struct secondary *r,
			  const struct colo_status_part *parts, size_t nparts);
/* The same for a primary (mode = primary): the disk files front p. */
struct fusefs *fusefs_new_primary(const struct config *cfg, struct primary *p,
				  const struct colo_status_part *parts,
				  size_t nparts);
/* Protect in place (fs/protect.c): set_protect lets the ctl take
 * "protect [full] URI" in done; fusefs_protect switches the disk files to
 * the primary protect_switch makes (draining the view's I/O), then with
 * start starts its sync.  0, or -1 with errno (the reason in .colo/error).
 */
struct protect;
void fusefs_set_protect(struct fusefs *fs, struct protect *pr);
int fusefs_protect(struct fusefs *fs, const char *uri, bool full, bool start);
/* Serves requests with a pool of threads until the filesystem is
 * unmounted or a signal arrives.  Returns when every request in flight has
 * been answered: 0, or -1 with errno.
 */
int fusefs_run(struct fusefs *fs);
/* Unmounts (if still mounted).  Later requests fail with ENOTCONN. */
void fusefs_unmount(struct fusefs *fs);
/* Unmounts if needed, removes the signal handlers and frees.  NULL is a
 * no-op.
 */
void fusefs_free(struct fusefs *fs);

/* Checks that path can be mounted on: an existing directory that is not a
 * mount point already (nor a dead FUSE mount).  0, or -1 with errno after
 * logging a clear message.
 */
int fusefs_check_mountpoint(const char *path);
/* Whether a colofs file system (fuse.colofs) is mounted on path, from
 * /proc/self/mountinfo only: never a request to it, which would wait
 * while a holder restarts.
 */
bool fusefs_colofs_mounted(const char *path);

/* Logs, per disk, who the kernel will keep from opening its file (no
 * allow_other: every user but colofs's) and what to set so that a
 * hypervisor running as another user can open it.  Run at mount and by
 * --check-config.
 */
void fusefs_check_access(const struct config *cfg);

/* For a holder (holder.c): mounts cfg's file system with the options
 * every worker's session uses, and serves nothing.  The /dev/fuse fd goes
 * to *fd (owned by the returned handle).  NULL after logging why.
 */
void *fusefs_hold(const struct config *cfg, int *fd);
/* Unmounts and closes what fusefs_hold made.  NULL is a no-op. */
void fusefs_hold_release(void *mount);

#endif
