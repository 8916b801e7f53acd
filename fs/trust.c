/* SPDX-License-Identifier: MIT */
/* Whether colofs may trust the paths its config names (doc/security.md).
 *
 * colofs runs as root and writes into state_dir, buffer_dir and the metrics
 * file's directory.  A directory another user can write lets that user plant
 * files there: a forged state file (state=done fences the disk), or, before
 * core/fdio.h, a link that steered root's writes.  So, as sshd's StrictModes
 * does, colofs refuses to start (and --check-config fails) when one of these
 * directories
 *
 *   - is a symbolic link (name the directory itself),
 *   - is not a directory,
 *   - is owned by a user other than root or the user colofs runs as,
 *   - is writable by group or others (a sticky bit does not help: the
 *     attacker's own files in it are theirs to name as they like),
 *
 * or when one of its ancestors could be swapped by another user: an
 * ancestor owned by someone else, writable by group or others without the
 * sticky bit, or a link an untrusted user owns.  A directory that does not
 * exist yet (state_dir is made at start) is judged by its ancestors.
 *
 * And the files the config names must be distinct: metrics_file, state_dir,
 * buffer_dir, the mountpoint, the unix socket, each disk's image and each
 * qcow2 overlay file are compared by device and inode (for a path that does
 * not exist yet, by its parent's device and inode and its last component),
 * so that "metrics_file = the image" is refused instead of replacing the
 * disk with metrics text.  metrics_file must be a regular file or absent.
 *
 * The files colofs reads back from those directories (state file,
 * bitmaps, journals, buffers, overlays) are judged too, as core/fdio.c's
 * fdio_check_own judges them when they are opened: a file planted while a
 * directory was open to others is named by --check-config.
 *
 * Every check logs what it found, naming the setting, the path and the fix,
 * and all are run, so one --check-config shows every problem.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse/fusefs.h"
#include "log.h"
#include "trust.h"

/* The directory part of path ("." for a bare name, "/" for "/x"). */
static void
dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, len, ".");
	else
		snprintf(dir, len, "%.*s",
			 slash == path ? 1 : (int) (slash - path), path);
}

static bool
trusted_uid(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* Each proper ancestor of path, from "/" down, must be safe from other
 * users: owned by root or us, and writable by others only if sticky; a
 * link among them must be ours or root's.  0, or -1 after logging.
 */
static int
check_ancestors(const char *what, const char *path)
{
	char prefix[PATH_MAX];
	size_t n = strlen(path), i;
	struct stat st;
	int bad = 0;

	if (n >= sizeof prefix || path[0] != '/')
		return 0; /* config.c wants absolute paths */
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		if (path[i] == '\0')
			break; /* path itself: the caller's to judge */
		memcpy(prefix, path, i);
		prefix[i] = '\0';
		if (lstat(prefix, &st) == -1)
			return 0; /* the rest does not exist yet */
		if (S_ISLNK(st.st_mode) && !trusted_uid(st.st_uid)) {
			log_error("%s %s: its ancestor %s is a link owned by "
				  "uid %u: that user decides where %s is",
				  what, path, prefix, (unsigned) st.st_uid,
				  what);
			bad = 1;
		}
		if (stat(prefix, &st) == -1)
			return 0;
		if (!trusted_uid(st.st_uid)) {
			log_error("%s %s: its ancestor %s is owned by uid %u, "
				  "who could replace %s; use a directory under "
				  "one only root owns",
				  what, path, prefix, (unsigned) st.st_uid,
				  what);
			bad = 1;
		} else if ((st.st_mode & (S_IWGRP | S_IWOTH)) &&
			   !(st.st_mode & S_ISVTX)) {
			log_error("%s %s: its ancestor %s is writable by group "
				  "or others (mode %04o), who could replace %s; "
				  "chmod go-w %s",
				  what, path, prefix,
				  (unsigned) (st.st_mode & 07777), what,
				  prefix);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

/* A directory colofs writes its files into.  0, or -1 after logging. */
static int
check_dir(const char *what, const char *dir, bool may_be_missing)
{
	struct stat st;
	int bad = check_ancestors(what, dir);

	if (lstat(dir, &st) == -1) {
		if (errno == ENOENT && may_be_missing)
			return bad;
		log_error("%s %s: %m", what, dir);
		return -1;
	}
	if (S_ISLNK(st.st_mode)) {
		log_error("%s %s is a symbolic link: colofs does not write "
			  "through links; name the directory it points to",
			  what, dir);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_error("%s %s: not a directory", what, dir);
		return -1;
	}
	if (!trusted_uid(st.st_uid)) {
		log_error("%s %s is owned by uid %u, not by root or the user "
			  "colofs runs as: that user could plant files colofs "
			  "would trust; chown root %s",
			  what, dir, (unsigned) st.st_uid, dir);
		bad = -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		log_error("%s %s is writable by group or others (mode %04o): "
			  "they could plant files colofs would trust; chmod 700 "
			  "%s",
			  what, dir, (unsigned) (st.st_mode & 07777), dir);
		bad = -1;
	}
	return bad;
}

/* One path the config names, for the distinctness check. */
struct ident {
	char what[80];
	const char *path;
	bool exists; /* dev/ino are the file's, else the parent's */
	dev_t dev;
	ino_t ino;
	const char *base; /* last component, when !exists */
};

static void
ident_of(struct ident *id, const char *what, const char *path)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat st;

	snprintf(id->what, sizeof id->what, "%s", what);
	id->path = path;
	id->exists = stat(path, &st) == 0;
	id->dev = id->exists ? st.st_dev : 0;
	id->ino = id->exists ? st.st_ino : 0;
	id->base = slash ? slash + 1 : path;
	if (id->exists || slash == NULL)
		return;
	dir_of(path, parent, sizeof parent);
	if (stat(parent, &st) == 0) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
	}
}

static bool
ident_same(const struct ident *a, const struct ident *b)
{
	if (a->exists != b->exists || a->dev != b->dev || a->ino != b->ino)
		return false;
	if (a->exists)
		return true;
	return a->ino != 0 && strcmp(a->base, b->base) == 0;
}

static int
check_distinct(const struct config *cfg)
{
	size_t n = 0, i, k, max = 5 + 4 * cfg->ndisks;
	char ovl[3][PATH_MAX];
	struct ident *ids = calloc(max, sizeof *ids);
	char **owned = calloc(3 * cfg->ndisks + 1, sizeof *owned);
	size_t nowned = 0;
	int bad = 0;

	if (ids == NULL || owned == NULL) {
		free(ids);
		free(owned);
		log_error("checking the config's paths: out of memory");
		return -1;
	}
	if (cfg->metrics_file)
		ident_of(&ids[n++], "metrics_file", cfg->metrics_file);
	ident_of(&ids[n++], "state_dir", cfg->state_dir);
	if (cfg->buffer_dir)
		ident_of(&ids[n++], "buffer_dir", cfg->buffer_dir);
	/* A live colofs mount there (a holder's worker starting, a holder
	 * resuming from systemd's fd store): a stat would wait for a server
	 * that is this very process, not serving yet.  It is a mount point,
	 * so no other path of the config can be it anyway.
	 */
	if (!fusefs_colofs_mounted(cfg->mountpoint))
		ident_of(&ids[n++], "mountpoint", cfg->mountpoint);
	if (cfg->listen && cfg->listen_addr.kind == CONFIG_LISTEN_UNIX)
		ident_of(&ids[n++], "listen", cfg->listen_addr.path);
	for (i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *d = &cfg->disks[i];
		static const char *const sfx[3] = {
			".overlay",
			".overlay.map",
			".overlay.log",
		};
		char what[80];

		snprintf(what, sizeof what, "disk %s image", d->name);
		ident_of(&ids[n++], what, d->image);
		if (cfg->buffer_dir == NULL || d->format == IMAGE_FORMAT_RAW)
			continue;
		for (k = 0; k < 3; k++) {
			snprintf(ovl[k], sizeof ovl[k], "%s/%s%s",
				 cfg->buffer_dir, d->name, sfx[k]);
			owned[nowned] = strdup(ovl[k]);
			if (owned[nowned] == NULL)
				continue;
			snprintf(what, sizeof what, "disk %s's overlay file",
				 d->name);
			ident_of(&ids[n++], what, owned[nowned++]);
		}
	}
	for (i = 0; i < n; i++)
		for (k = i + 1; k < n; k++) {
			if (!ident_same(&ids[i], &ids[k]))
				continue;
			log_error("%s %s and %s %s are the same file: each "
				  "setting needs its own",
				  ids[i].what, ids[i].path, ids[k].what,
				  ids[k].path);
			bad = 1;
		}
	for (i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(ids);
	return bad ? -1 : 0;
}

/* The files colofs would read back from dir (the state file, bitmaps and
 * journals in state_dir; buffers and overlays in buffer_dir), judged as
 * fdio_check_own does when they are opened, so that --check-config names
 * a file planted while the directory was open to others.  0, or -1 after
 * logging.
 */
static int
check_own_files(const char *what, const char *dir, const char *const *suffixes)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int bad = 0;

	if (d == NULL)
		return 0; /* check_dir said why, or it is made later */
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name), k;
		const char *why = NULL;
		struct stat st;

		for (k = 0; suffixes[k] != NULL; k++) {
			size_t sl = strlen(suffixes[k]);

			if (n > sl &&
			    strcmp(de->d_name + n - sl, suffixes[k]) == 0)
				break;
		}
		if (suffixes[k] == NULL || fstatat(dirfd(d), de->d_name, &st,
						   AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (S_ISLNK(st.st_mode))
			why = "is a symbolic link";
		else if (!S_ISREG(st.st_mode))
			why = "is not a regular file";
		else if (!trusted_uid(st.st_uid))
			why = "is owned by another user";
		else if (st.st_mode & (S_IWGRP | S_IWOTH))
			why = "is writable by group or others";
		else if (st.st_nlink != 1)
			why = "has other hard links";
		if (why == NULL)
			continue;
		log_error("%s %s: %s %s (uid %u, mode %04o): colofs would "
			  "refuse it; remove it if it is not colofs's own",
			  what, dir, de->d_name, why, (unsigned) st.st_uid,
			  (unsigned) (st.st_mode & 07777));
		bad = 1;
	}
	closedir(d);
	return bad ? -1 : 0;
}

int
trust_check_config(const struct config *cfg)
{
	static const char *const state_files[] = {
		".state",
		".dirty",
		".al",
		".journal",
		".lock",
		".log",
		NULL,
	};
	static const char *const buffer_files[] = {
		".hidden",	".active",	".overlay",
		".overlay.map", ".overlay.log", NULL,
	};
	struct stat st;
	int bad = 0;

	if (check_dir("state_dir", cfg->state_dir, true) == -1 ||
	    check_own_files("state_dir", cfg->state_dir, state_files) == -1)
		bad = 1;
	if (cfg->buffer_dir &&
	    (check_dir("buffer_dir", cfg->buffer_dir, false) == -1 ||
	     check_own_files("buffer_dir", cfg->buffer_dir, buffer_files) ==
		     -1))
		bad = 1;
	if (cfg->metrics_file) {
		char dir[PATH_MAX];

		dir_of(cfg->metrics_file, dir, sizeof dir);
		if (check_dir("metrics_file's directory", dir, false) == -1)
			bad = 1;
		if (lstat(cfg->metrics_file, &st) == 0 &&
		    !S_ISREG(st.st_mode)) {
			log_error("metrics_file %s is %s, not a regular file: "
				  "name a new file colofs alone writes",
				  cfg->metrics_file,
				  S_ISDIR(st.st_mode)	? "a directory"
				  : S_ISLNK(st.st_mode) ? "a symbolic link"
							: "a special file");
			bad = 1;
		}
	}
	if (check_distinct(cfg) == -1)
		bad = 1;
	return bad ? -1 : 0;
}
