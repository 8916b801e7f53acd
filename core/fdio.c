/* SPDX-License-Identifier: MIT */
/* Whole transfers on file descriptors, shared by the fd-backed stores and
 * the images: short reads and writes and EINTR are retried, so a caller
 * sees all of it or an error.  And the one way colofs creates and replaces
 * its own files (see fdio.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crashpoint.h"
#include "fdio.h"
#include "log.h"

int
full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, off);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EIO;	/* beyond the end: a short file */
			return -1;
		}
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

int
full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t r = pwrite(fd, p, len, off);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

/* Moves the n bytes in pipe rd into fd at *off.  0, or -1. */
static int
splice_out(int rd, int fd, uint64_t *off, size_t n)
{
	while (n > 0) {
		loff_t o = (loff_t) *off;
		ssize_t r = splice(rd, NULL, fd, &o, n, 0);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		*off += (uint64_t) r;
		n -= (size_t) r;
	}
	return 0;
}

int
full_pwrite_lent(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	int pfd[2], saved;
	ssize_t cap;

	/* Under two pages a pipe's six system calls cost more than the
	 * trap they spare (a scattered buffer commits 4 KiB runs).
	 */
	if (len < 2 * (size_t) sysconf(_SC_PAGESIZE) ||
	    pipe2(pfd, O_CLOEXEC) == -1)
		return full_pwrite(fd, buf, len, off);
	/* A bigger pipe takes fewer rounds; refused: the default. */
	if (fcntl(pfd[1], F_SETPIPE_SZ, 1024 * 1024) == -1 &&
	    errno != EPERM && errno != EBUSY)
		goto fallback;
	cap = fcntl(pfd[1], F_GETPIPE_SZ);
	if (cap <= 0)
		goto fallback;
	while (len > 0) {
		/* The pipe is empty here; at most cap bytes fit. */
		struct iovec iov = { (void *) p, len < (size_t) cap ?
						 len : (size_t) cap };
		ssize_t n = vmsplice(pfd[1], &iov, 1, SPLICE_F_NONBLOCK);
		uint64_t at = off;

		if (n <= 0)
			goto fallback;
		if (splice_out(pfd[0], fd, &at, (size_t) n) == -1) {
			/* Not a file splice can write (EINVAL): write the
			 * rest, from what reached fd.  Else a real error.
			 */
			if (errno != EINVAL || at != off)
				goto fail;
			goto fallback;
		}
		p += n;
		len -= (size_t) n;
		off += (uint64_t) n;
	}
	close(pfd[0]);
	close(pfd[1]);
	return 0;
fallback:
	close(pfd[0]);
	close(pfd[1]);
	return full_pwrite(fd, p, len, off);
fail:
	saved = errno;
	close(pfd[0]);
	close(pfd[1]);
	errno = saved;
	return -1;
}

/* 0 if fallocate(mode) did it, 1 if the file cannot do that mode, -1. */
static int
try_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	if (fallocate(fd, mode | FALLOC_FL_KEEP_SIZE, (off_t) off,
		      (off_t) len) == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)
		return 1;
	return -1;
}

static int
write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const char zeros[65536];

	while (len > 0) {
		size_t n = len < sizeof zeros ? len : sizeof zeros;

		if (full_pwrite(fd, zeros, n, off) == -1)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

int
fd_zero_range(int fd, uint64_t off, uint64_t len, bool punch)
{
	int r = 1;

	if (len == 0)
		return 0;
	if (punch)
		r = try_fallocate(fd, FALLOC_FL_PUNCH_HOLE, off, len);
	if (r == 1)
		r = try_fallocate(fd, FALLOC_FL_ZERO_RANGE, off, len);
	return r == 1 ? write_zeros(fd, off, len) : r;
}

int (*fdio_datasync_fault)(void);

int
fdio_datasync(int fd, atomic_bool *failed, const char *what)
{
	if (atomic_load(failed)) {
		/* Logged once, when it failed: a VM may fsync often. */
		log_debug("sync %s: an earlier sync failed, so its data may "
			  "be lost: every sync fails until it is reopened",
			  what);
		errno = EIO;
		return -1;
	}
	if ((fdio_datasync_fault != NULL && fdio_datasync_fault() == -1) ||
	    fdatasync(fd) == -1) {
		int saved = errno;

		atomic_store(failed, true);
		log_error("sync %s: %s; later syncs fail too", what,
			  strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

int
fdio_dir_open(const char *path)
{
	return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int (*fdio_dir_fsync_fault)(void);

static int
dir_fsync(int dirfd)
{
	if (fdio_dir_fsync_fault != NULL && fdio_dir_fsync_fault() == -1)
		return -1;
	return fsync(dirfd);
}

int
fdio_parent_open(const char *path, const char **name)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	*name = slash != NULL ? slash + 1 : path;
	if (slash == NULL)
		return fdio_dir_open(".");
	if ((size_t) (slash - path) >= sizeof dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(dir, sizeof dir, "%.*s",
		 slash == path ? 1 : (int) (slash - path), path);
	return fdio_dir_open(dir);
}

int
fdio_sync_dir(int dirfd)
{
	if (dir_fsync(dirfd) == -1) {
		log_error("fsync of a directory: %m");
		return -1;
	}
	return 0;
}

int
durable_sync_dir(const char *dir)
{
	int fd = fdio_dir_open(dir), ret, saved;

	if (fd == -1) {
		log_error("open directory %s: %m", dir);
		return -1;
	}
	ret = fdio_sync_dir(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

int
fdio_create_tmp(int dirfd, const char *name, int extra, mode_t mode,
		char *tmp, size_t tmplen)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
	int tries;

	for (tries = 0; tries < 16; tries++) {
		unsigned char rnd[6];
		char sfx[sizeof rnd + 1];
		size_t i;
		int fd;

		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
			return -1;
		for (i = 0; i < sizeof rnd; i++)
			sfx[i] = digits[rnd[i] & 31];
		sfx[sizeof rnd] = '\0';
		if (snprintf(tmp, tmplen, "%s.tmp.%s", name, sfx) >=
		    (int) tmplen) {
			errno = ENAMETOOLONG;
			log_error("%s: %m", name);
			return -1;
		}
		fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL |
			    O_NOFOLLOW | O_CLOEXEC | extra, mode);
		if (fd != -1)
			return fd;
		if (errno != EEXIST) {
			log_error("create %s: %m", tmp);
			return -1;
		}
	}
	log_error("create %s: %m", tmp);
	return -1;
}

/* Crash tests: the point STEP.EXT, EXT being what follows name's last
 * dot ("fsynced.state", "renamed.journal", "dir_synced.state").
 */
static void
commit_point(const char *step, const char *name)
{
	const char *ext = strrchr(name, '.');
	char point[64];

	if (!crash_points_enabled())
		return;
	snprintf(point, sizeof point, "%s.%s", step, ext ? ext + 1 : name);
	crash_point(point);
}

int
fdio_commit_tmp(int fd, int dirfd, const char *tmp, const char *name)
{
	int saved;

	if (fsync(fd) == -1) {
		saved = errno;
		log_error("fsync %s: %m", tmp);
		goto undo;
	}
	commit_point("fsynced", name);
	if (renameat(dirfd, tmp, dirfd, name) == -1) {
		saved = errno;
		log_error("rename %s to %s: %m", tmp, name);
		goto undo;
	}
	commit_point("renamed", name);
	if (dir_fsync(dirfd) == -1) {
		log_error("%s renamed, but fsync of its directory: %m", name);
		return 1;
	}
	commit_point("dir_synced", name);
	return 0;
undo:
	unlinkat(dirfd, tmp, 0);
	errno = saved;
	return -1;
}

int
fdio_sweep_tmp(int dirfd, const char *name)
{
	size_t nlen = strlen(name);
	struct dirent *de;
	DIR *d;
	int dup_fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dup_fd == -1)
		return -1;
	d = fdopendir(dup_fd);
	if (d == NULL) {
		close(dup_fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (strncmp(de->d_name, name, nlen) != 0 ||
		    strncmp(de->d_name + nlen, ".tmp.", 5) != 0)
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			unlinkat(dirfd, de->d_name, 0);
	}
	closedir(d);
	return 0;
}

int
fdio_open_file_at(int dirfd, const char *name, int flags)
{
	struct stat st;
	/* O_NONBLOCK: a planted FIFO must not hang the open. */
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK |
			O_CLOEXEC);

	if (fd == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto err;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto err;
	}
	if (!(flags & O_NONBLOCK) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == -1)
		goto err;
	return fd;
err:
	{
		int saved = errno;

		close(fd);
		errno = saved;
	}
	return -1;
}

int
fdio_open_or_create_at(int dirfd, const char *name, int flags, mode_t mode)
{
	char tmp[NAME_MAX + 16];
	int fd, t, tries, saved;

	for (tries = 0; tries < 8; tries++) {
		fd = fdio_open_file_at(dirfd, name, flags);
		if (fd != -1 || errno != ENOENT)
			return fd;
		t = fdio_create_tmp(dirfd, name, 0, mode, tmp, sizeof tmp);
		if (t == -1)
			return -1;
		if (linkat(dirfd, tmp, dirfd, name, 0) == 0) {
			unlinkat(dirfd, tmp, 0);
			fdio_sync_dir(dirfd);
			close(t);
			continue;	/* reopened with the caller's flags */
		}
		saved = errno;
		unlinkat(dirfd, tmp, 0);
		close(t);
		if (saved != EEXIST) {
			errno = saved;
			return -1;
		}
	}
	errno = EAGAIN;
	return -1;
}

int
fdio_check_own(int fd, char *err, size_t errlen)
{
	struct stat st;
	const char *why = NULL;

	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid())
		why = "owned by another user";
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		why = "writable by group or others";
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (st.st_nlink != 1)
		why = "has other hard links";
	if (why == NULL)
		return 0;
	snprintf(err, errlen, "%s (uid %u, mode %04o): colofs does not trust "
		 "it; remove it if it is not colofs's own", why,
		 (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
	errno = EPERM;
	return -1;
}

int
fdio_open_own(const char *path, int flags, char *err, size_t errlen)
{
	const char *name;
	int dirfd = fdio_parent_open(path, &name), fd, saved;

	if (dirfd == -1) {
		snprintf(err, errlen, "its directory: %s", strerror(errno));
		return -1;
	}
	fd = fdio_open_file_at(dirfd, name, flags);
	saved = errno;
	close(dirfd);
	if (fd == -1) {
		snprintf(err, errlen, "%s", saved == EINVAL ?
			 "not a regular file" : strerror(saved));
		errno = saved;
		return -1;
	}
	if (fdio_check_own(fd, err, errlen) == -1) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

int
durable_write_at(int dirfd, const char *name, const void *data, size_t len)
{
	return durable_write_mode_at(dirfd, name, data, len, 0600);
}

int
durable_write_mode_at(int dirfd, const char *name, const void *data,
		      size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1];
	int fd, ret, saved;

	fd = fdio_create_tmp(dirfd, name, 0, mode, tmp, sizeof tmp);
	if (fd == -1)
		return -1;
	if (full_pwrite(fd, data, len, 0) == -1) {
		saved = errno;
		log_error("write %s: %m", tmp);
		close(fd);
		unlinkat(dirfd, tmp, 0);
		errno = saved;
		return -1;
	}
	ret = fdio_commit_tmp(fd, dirfd, tmp, name);
	saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

int
durable_write(const char *dir, const char *name, const void *data,
	      size_t len)
{
	int dirfd = fdio_dir_open(dir), ret, saved;

	if (dirfd == -1) {
		log_error("open directory %s: %m", dir);
		return -1;
	}
	ret = durable_write_at(dirfd, name, data, len);
	saved = errno;
	close(dirfd);
	errno = saved;
	return ret;
}
