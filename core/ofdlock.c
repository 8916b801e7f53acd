/* SPDX-License-Identifier: MIT */
/* One owner per image: QEMU's lock bytes, taken the way QEMU takes them.
 *
 * QEMU (block/file-posix.c) expresses who may do what to an image with
 * shared OFD locks on single bytes of the image file, two bytes per
 * permission bit i (consistent read 0, write 1, write unchanged 2,
 * resize 3):
 *
 *   byte 100 + i   "I use permission i"
 *   byte 200 + i   "I do not let others use permission i"
 *
 * Every opener first takes its own bytes (F_RDLCK, so that any number of
 * openers can hold the same byte), then tests the other side with
 * F_OFD_GETLK for a write lock: for each permission it wants, byte 200+i
 * must be free of others' locks; for each it does not share, byte 100+i.
 * Both openers take before they test, so of two racing, at least one
 * sees the other.  A test on a byte that only this open file holds finds
 * no conflict: OFD locks belong to the open file description.
 *
 * colofs holds an image as a running VM holds its disk: it reads, writes
 * and writes unchanged (100, 101, 102) and does not share write or
 * resize (201, 203).  So a second colofs, qemu-io or qemu-img convert
 * onto it is refused ("Failed to get "write" lock"), qemu-img info
 * without -U too, and colofs refuses an image that a QEMU writer holds
 * (101).
 *
 * The holder: F_OFD_GETLK reports pid -1 for OFD locks, so on a refusal
 * /proc/PID/fdinfo/FD (whose "lock:" lines list the locks of that open
 * file) is searched for the file's device and inode, and the pid and
 * command line found go into the message.  That costs a walk of /proc,
 * once, on the way out.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "ofdlock.h"

enum {
	PERM_BASE = 100,
	SHARED_BASE = 200,
	PERM_READ = 0,		  /* BLK_PERM_CONSISTENT_READ */
	PERM_WRITE = 1,		  /* BLK_PERM_WRITE */
	PERM_WRITE_UNCHANGED = 2, /* BLK_PERM_WRITE_UNCHANGED */
	PERM_RESIZE = 3,	  /* BLK_PERM_RESIZE */
	NPERMS = 4,
};

static const char *const perm_names[NPERMS] = {
	"consistent read",
	"write",
	"write unchanged",
	"resize",
};

/* What colofs uses, and what it does not let others use. */
static const unsigned colofs_perms = 1u << PERM_READ | 1u << PERM_WRITE |
				     1u << PERM_WRITE_UNCHANGED;
static const unsigned colofs_unshared = 1u << PERM_WRITE | 1u << PERM_RESIZE;

static int
set_lock(int fd, short type, off_t start, off_t len)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = start,
		.l_len = len,
	};

	return fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1 if another open file holds a lock that conflicts with a write lock on
 * [start, start+len), 0 if not, -1 with errno.
 */
static int
held_by_other(int fd, off_t start, off_t len)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = start,
		.l_len = len,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl) == -1)
		return -1;
	return fl.l_type != F_UNLCK;
}

/* 1 if /proc/PID/fdinfo/FD lists a lock on the file KEY ("MAJ:MIN:INO "). */
static bool
fdinfo_has(int dirfd, const char *name, const char *key)
{
	char buf[4096];
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (char *sp, *l = strtok_r(buf, "\n", &sp); l;
	     l = strtok_r(NULL, "\n", &sp))
		if (strncmp(l, "lock:", 5) == 0 && strstr(l, key))
			return true;
	return false;
}

/* The process holding a lock on st's file: its pid, else 0. */
static pid_t
find_holder(const struct stat *st)
{
	char key[64], path[320];
	struct dirent *p, *f;
	pid_t found = 0;
	DIR *proc = opendir("/proc");

	if (proc == NULL)
		return 0;
	snprintf(key, sizeof key, " %02x:%02x:%llu ", major(st->st_dev),
		 minor(st->st_dev), (unsigned long long) st->st_ino);
	while (found == 0 && (p = readdir(proc)) != NULL) {
		DIR *fds;

		if (!isdigit((unsigned char) p->d_name[0]))
			continue;
		snprintf(path, sizeof path, "/proc/%s/fdinfo", p->d_name);
		fds = opendir(path);
		if (fds == NULL)
			continue;
		while ((f = readdir(fds)) != NULL) {
			if (isdigit((unsigned char) f->d_name[0]) &&
			    fdinfo_has(dirfd(fds), f->d_name, key)) {
				found = (pid_t) atoi(p->d_name);
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

/* "pid N (COMMAND LINE)", "this colofs" or "another process" into out. */
static void
describe_holder(int fd, char *out, size_t len)
{
	char cmd[160] = "", path[64];
	struct stat st;
	pid_t pid;
	ssize_t n = 0;
	int cfd;

	if (fstat(fd, &st) == -1 || (pid = find_holder(&st)) == 0) {
		snprintf(out, len, "another process (not found in /proc)");
		return;
	}
	if (pid == getpid()) {
		snprintf(out, len,
			 "pid %d, this colofs (two disks name the "
			 "same file?)",
			 (int) pid);
		return;
	}
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
	cfd = open(path, O_RDONLY | O_CLOEXEC);
	if (cfd != -1) {
		n = read(cfd, cmd, sizeof cmd - 1);
		close(cfd);
	}
	if (n < 0)
		n = 0;
	cmd[n] = '\0';
	for (ssize_t i = 0; i + 1 < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	snprintf(out, len, "pid %d (%s)", (int) pid, n > 0 ? cmd : "?");
}

/* "WHAT: in use: HOLDER TAIL", logged: -1 with errno = EAGAIN. */
static int
in_use(int fd, const char *what, const char *tail)
{
	char who[256];

	describe_holder(fd, who, sizeof who);
	log_error("%s: in use: %s %s", what, who, tail);
	errno = EAGAIN;
	return -1;
}

/* Drops every byte ofdlock_image may have taken. */
static void
unlock_image(int fd)
{
	int saved = errno;

	set_lock(fd, F_UNLCK, PERM_BASE, NPERMS);
	set_lock(fd, F_UNLCK, SHARED_BASE, NPERMS);
	errno = saved;
}

int
ofdlock_image(int fd, const char *path)
{
	char label[PATH_MAX + 8], tail[256];
	const char *what = NULL;
	unsigned i, byte = 0;
	int r;

	snprintf(label, sizeof label, "image %s", path);
	for (i = 0; i < NPERMS; i++) {
		if (((colofs_perms >> i) & 1) &&
		    set_lock(fd, F_RDLCK, PERM_BASE + i, 1) == -1)
			goto busy;
		if (((colofs_unshared >> i) & 1) &&
		    set_lock(fd, F_RDLCK, SHARED_BASE + i, 1) == -1)
			goto busy;
	}
	/* Others' "not shared" bytes of what we use, then others' "use"
	 * bytes of what we do not share.
	 */
	for (i = 0; i < 2 * NPERMS && what == NULL; i++) {
		unsigned bit = i % NPERMS;
		bool use = i < NPERMS;

		if (!(((use ? colofs_perms : colofs_unshared) >> bit) & 1))
			continue;
		byte = (use ? SHARED_BASE : PERM_BASE) + bit;
		r = held_by_other(fd, byte, 1);
		if (r == -1)
			goto fail;
		if (r == 1)
			what = use ? "does not share" : "has";
	}
	if (what == NULL)
		return 0;
	unlock_image(fd);
	snprintf(tail, sizeof tail, "%s the \"%s\" permission (QEMU's lock "
		 "byte %u); colofs shares an image with no other writer: "
		 "stop it first", what, perm_names[byte % 100], byte);
	return in_use(fd, label, tail);
busy:
	/* A write lock on a byte we want: not QEMU's; say who anyway. */
	if (errno == EAGAIN || errno == EACCES) {
		unlock_image(fd);
		return in_use(fd, label, "holds a lock on it; colofs shares "
			      "an image with no other writer");
	}
fail:
	unlock_image(fd);
	log_error("%s: lock: %m", label);
	return -1;
}

int
ofdlock_exclusive(int fd, const char *path)
{
	if (set_lock(fd, F_WRLCK, 0, 0) == 0)
		return 0;
	if (errno != EAGAIN && errno != EACCES) {
		log_error("%s: lock: %m", path);
		return -1;
	}
	return in_use(fd, path, "holds it; one colofs per mountpoint and "
		      "state_dir");
}
