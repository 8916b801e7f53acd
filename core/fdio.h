/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FDIO_H
#define COLOFS_FDIO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Whole transfers, retrying short I/O and EINTR.  0, or -1 with errno
 * (EIO at EOF).
 */
int full_pread(int fd, void *buf, size_t len, uint64_t off);
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* full_pwrite that lends buf's pages to a pipe (vmsplice) and splices it
 * into fd, so that the kernel copies through its own mapping rather
 * than through this process's addresses: on a guest whose hypervisor
 * fills the kernel's view of user pages on first use, the first such
 * read of a page user space wrote costs ~14x a warm one (a failover
 * committing a memory buffer nothing had read through the kernel: 128 MiB
 * in 260 ms instead of 90).  Where splice cannot write fd (EINVAL before
 * any byte), or no pipe, or under two pages, it writes the rest with
 * full_pwrite.  buf must not change until it returns.
 */
int full_pwrite_lent(int fd, const void *buf, size_t len, uint64_t off);
/* Zeroes [off, off+len): with punch, a punched hole, else ZERO_RANGE,
 * else written zeros; without, ZERO_RANGE (the range stays allocated
 * where it was, as on a raw file or a block device), else written zeros,
 * never a hole.
 */
int fd_zero_range(int fd, uint64_t off, uint64_t len, bool punch);
/* fdatasync that stays failed.  Linux reports a write-back error to one
 * fsync only, and may have dropped the dirty pages it could not write:
 * a later fdatasync that returns 0 proves nothing.  So once one fails,
 * *failed is set and every later call fails with EIO without syncing,
 * until the file is opened again.  what names the file in the log.
 * 0, or -1 with errno.
 */
int fdio_datasync(int fd, atomic_bool *failed, const char *what);
/* Test hook: when set and it returns -1 (errno set), fdio_datasync fails
 * as if the fdatasync had.
 */
extern int (*fdio_datasync_fault)(void);


/* Creating files that a third party cannot redirect.
 *
 * colofs runs as root and writes into directories it does not always own
 * alone (state_dir, buffer_dir, the metrics file's directory).  Every file
 * it creates goes through these: the directory is opened once without
 * following a symlink, and each new file is created in it by a fresh,
 * unguessable name with O_CREAT | O_EXCL | O_NOFOLLOW, so a planted
 * symlink or file by that name makes the create fail instead of steering
 * root's write.  Publishing is a renameat within the same directory fd.
 */

/* Opens PATH as a directory for the *at calls: O_DIRECTORY | O_NOFOLLOW,
 * so a symlink is refused (ELOOP or ENOTDIR).  fd, or -1 with errno.
 */
int fdio_dir_open(const char *path);
/* Opens the directory PATH is in (fdio_dir_open; "." for a bare name) and
 * points *name at PATH's last component.  fd, or -1 with errno.
 */
int fdio_parent_open(const char *path, const char **name);
/* fsync of a directory fd, so that a create, rename or unlink in it lasts.
 * 0, or -1 with errno (logged).
 */
int fdio_sync_dir(int dirfd);
/* The same by path (opened with fdio_dir_open). */
int durable_sync_dir(const char *dir);
/* For tests (the fault backend, tests/unit/faulty.c): when set, called
 * before every fsync of a directory that fdio makes; -1 (with errno)
 * fails that fsync as the kernel would.
 */
extern int (*fdio_dir_fsync_fault)(void);

/* Creates a new, empty file in dirfd named NAME.tmp.XXXXXX (random
 * suffix) with O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | extra
 * and mode.  Its name goes to tmp (tmplen >= strlen(name) + 12).  fd, or
 * -1 with errno (logged).
 */
int fdio_create_tmp(int dirfd, const char *name, int extra, mode_t mode,
		    char *tmp, size_t tmplen);
/* Publishes a file made by fdio_create_tmp: fsync(fd), renameat tmp over
 * name in dirfd, fsync(dirfd).  fd stays open.  Returns 0; or -1 with
 * errno and tmp removed when it failed before the rename (name is as it
 * was); or 1 with errno when the rename was done but the directory fsync
 * failed: name already holds the new content and may survive a crash, so
 * the caller must treat it as written (and may retry fdio_sync_dir).
 */
int fdio_commit_tmp(int fd, int dirfd, const char *tmp, const char *name);
/* Removes leftovers NAME.tmp.* of earlier runs from dirfd (a crash between
 * create and rename).  Only regular files are removed; never follows a
 * link.  0, or -1 with errno.
 */
int fdio_sweep_tmp(int dirfd, const char *name);
/* Opens an existing file in dirfd without following a symlink and checks
 * that it is a regular file (EINVAL otherwise).  fd, or -1 with errno.
 */
int fdio_open_file_at(int dirfd, const char *name, int flags);
/* Opens NAME in dirfd as fdio_open_file_at does (flags: O_RDWR or
 * O_WRONLY, maybe O_APPEND), creating it empty (mode) if missing: a new
 * file made by fdio_create_tmp and published with link(2), which never
 * replaces, so that racing callers end up with the same file and none
 * holds one that is no longer named (a lock file, an append-only log).
 * fd, or -1 with errno.
 */
int fdio_open_or_create_at(int dirfd, const char *name, int flags,
			   mode_t mode);

/* A file colofs trusts as its own: a regular file with one link, owned by
 * root or the effective user, not writable by group or others (as sshd's
 * StrictModes).  0, or -1 with errno EPERM and why in err.
 */
int fdio_check_own(int fd, char *err, size_t errlen);
/* Opens the existing file PATH as fdio_open_file_at does (its directory by
 * fdio_dir_open, the name without following a link) and checks it with
 * fdio_check_own.  fd, or -1 with errno and why in err.
 */
int fdio_open_own(const char *path, int flags, char *err, size_t errlen);

/* Replaces DIR/NAME by data atomically with the calls above.  Returns as
 * fdio_commit_tmp does (1: renamed, the directory fsync failed).
 */
int durable_write_at(int dirfd, const char *name, const void *data,
		     size_t len);
/* The same with the file's mode (durable_write_at: 0600). */
int durable_write_mode_at(int dirfd, const char *name, const void *data,
			  size_t len, mode_t mode);
int durable_write(const char *dir, const char *name, const void *data,
		  size_t len);

#endif
