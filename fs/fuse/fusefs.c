/* SPDX-License-Identifier: MIT */
/* The FUSE front end: the secondary VM's view of each disk as a file.
 *
 * Why this file is long: the FUSE operations of both roles share one
 * inode table, the open-file accounting and the stop protocol (at the
 * bottom), which a split would have to export; the .colo/ files' texts
 * are already apart, in colo-secondary.c and colo-primary.c.
 *
 *   MOUNT/            ino 1   dr-xr-xr-x
 *   MOUNT/NAME        ino 16+i one regular file per disk: the view V
 *   MOUNT/.colo/      ino 2   dr-xr-xr-x
 *   MOUNT/.colo/ctl   ino 3   --w-------  start|checkpoint|stop|failover
 *   MOUNT/.colo/status ino 4  -r--r--r--  key=value lines (colo-secondary.c)
 *   MOUNT/.colo/error ino 5   -rw-r--r--  last error; a write clears it
 *   MOUNT/.colo/metrics ino 6 -r--r--r--  the status as OpenMetrics (colo-secondary.c)
 *   MOUNT/.colo/errors ino 7  -r--r--r--  the last errors, with their times
 *
 * A disk file's owner, group and mode start as the config's; chown and
 * chmod (libvirt's DAC relabelling) change them in memory for the life of
 * the mount when allow_chown is set.  The kernel checks who may
 * (default_permissions: chown needs CAP_CHOWN, chmod the owner), so the
 * handler only stores them, in atomics (fill_attr reads them unlocked).
 * With metrics_file, a thread writes the metrics there every
 * METRICS_PERIOD seconds while the session runs.
 *
 * The namespace is fixed at mount time, so inode numbers are constants and
 * lookup/forget keep no state.  Every structure here is read-only once
 * fusefs_new returns: the handlers, running in the loop's worker threads,
 * share it without a lock.  The secondary does its own locking (range locks
 * for I/O, a control lock for the words), so requests on non-overlapping
 * ranges run in parallel and nothing here serializes them.
 *
 * Requests.  A disk read whose range lives in one place (the image, or
 * one buffer) replies in place: secondary_view_read_begin gives the fd or
 * memory and libfuse splices it (memory through fuse-pages.c) or writes
 * it straight into the reply; other
 * reads (several layers, or qcow2) use secondary_view_read into a heap
 * buffer.  Writes go to secondary_view_write
 * (at most 1 MiB: max_write; reads at most 512 KiB: max_read, see
 * MAX_READ).  Reads at or past the end return 0 bytes and reads across it
 * are shortened, as for any file; writes that do not fit fail with ENOSPC
 * because the file never grows.  fsync and fdatasync are
 * secondary_view_flush; fallocate PUNCH_HOLE|KEEP_SIZE is secondary_view_punch
 * and ZERO_RANGE secondary_view_zero, which keeps S's blocks allocated as
 * ZERO_RANGE does on a raw file.
 *
 * Page cache coherence.  By default (page_cache = false) every disk open
 * gets direct_io: the kernel caches nothing, every read comes here, and a
 * checkpoint has nothing to invalidate, so "echo checkpoint" costs the
 * same whatever was read.  With page_cache = true the kernel may cache
 * the disk files' pages; V changes behind its back only at these points:
 *   - in state none, V = S and the primary's NBD writes change S;
 *   - checkpoint and stop drop both buffers (V := S).
 * (Failover commits the buffers into S without changing V; from failover
 * on, the primary cannot write.)  So a disk file opened in state none gets
 * direct_io (no page cache, for the life of that open file), as does an
 * O_DIRECT open, and any other open keeps the cache; after every
 * successful ctl word, before the ctl write is answered, each disk inode
 * that may have cached pages is invalidated with
 * fuse_lowlevel_notify_inval_inode.  The kernel performs that
 * synchronously (it waits for locked pages, i.e. reads in flight, and then
 * drops them), so a process holding the file open reads the new view as
 * soon as "echo checkpoint > ctl" has returned.  It runs with no secondary
 * lock held, so the reads it waits for can complete.  Pages dirtied
 * through a writable shared mmap are written back (an invalidation
 * launders them) before a checkpoint or stop, so that they go with the
 * epoch they belong to: V == S when the ctl write returns.
 *
 * .colo files use direct_io: status, error and metrics are generated at
 * open into a per-open snapshot (fh names it in a table, struct snap),
 * so a read never sees stale text.
 *
 * On a primary (mode = primary) the same file system fronts the primary
 * engine instead of the secondary: the disk_* and *_text helpers below are
 * the only places that tell the two apart.  A primary's disk file changes
 * only through this mount, so nothing there needs invalidating.
 * Stopping.  Unmounting while a VM holds a disk file open would turn every
 * later guest access into an I/O error; the kernel already refuses
 * fusermount3 -u then (EBUSY), and SIGTERM and SIGINT follow the same
 * rule: with no disk file open they end the session loop (as libfuse's
 * handler does); with one open, the signal only marks a stop pending,
 * and the release of the last open disk file ends the loop.  A second
 * signal ends it at once.  The handler and the last release each publish
 * their half (pending, then the count; the count, then pending, seq_cst)
 * before reading the other's, so one of them always sees both.  The
 * handler, which may not log, wakes a thread that says why in the log;
 * .colo/status shows disk_files_open and stop_pending.
 *
 * Live restart (holder.c).  Under a holder the session is resumed on the
 * holder's /dev/fuse file instead of mounted (fuse_resume), the loop reads
 * that one file (no clone_fd: a cloned file dies with this process, and
 * the kernel would fail what it had queued there), and the holder, not
 * this process, unmounts.  What a restart must find again is stable: the
 * inode numbers are constants, a disk's fh is its index, the open disk
 * files are counted in the holder's state, and a .colo snapshot's fh
 * carries its process's epoch and its text's length: a new process takes
 * a fresh snapshot for the first read of a file the last one opened, and
 * ends the file for a reader that had all of the old text (struct snap);
 * a reader that had only part of it gets ESTALE.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <signal.h>

#include "colo.h"
#include "fuse-loop.h"
#include "fuse-pages.h"
#include "fuse-resume.h"
#include "fusefs.h"
#include "handover.h"
#include "log.h"
#include "protect.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

enum {
	INO_ROOT = FUSE_ROOT_ID,	/* 1 */
	INO_COLO = 2,
	INO_CTL = 3,
	INO_STATUS = 4,
	INO_ERROR = 5,
	INO_METRICS = 6,
	INO_ERRORS = 7,
	INO_DISK0 = 16,
};

/* The .colo files whose open takes a snapshot of a generated text. */
#define INO_SNAP(ino) ((ino) == INO_STATUS || (ino) == INO_ERROR || \
		       (ino) == INO_METRICS || (ino) == INO_ERRORS)

#define MAX_IO (1024 * 1024)	/* max_write */
/* max_read: a reply from the image's fd is spliced through a pipe that
 * must hold it whole, header included, and an unprivileged process's pipe
 * stops at /proc/sys/fs/pipe-max-size, 1 MiB by default.  A 1 MiB reply
 * does not fit: libfuse then reads it into a freshly allocated buffer,
 * faulting in 256 pages per MiB, and copies it twice.  512 KiB replies are
 * spliced: one copy, no allocation (cold reads of the view 0.6-1.0 to
 * 1.3-1.8 GB/s; reads from a memory buffer pay one more round trip per
 * MiB: 3.3 to 2.2 GB/s; doc/performance.md).
 */
#define MAX_READ (512 * 1024)

/* A disk file's fh: its index, and whether this open uses the cache. */
#define FH_DISK(i, cached) (((uint64_t)(i) << 1) | (cached))
#define FH_CACHED(fh) ((fh) & 1)
#define ATTR_TIMEOUT 86400.0	/* nothing changes attributes behind us */
#define METRICS_PERIOD 5	/* seconds between metrics_file writes */

struct fusefs_disk {
	struct fusefs *fs;
	struct secondary_disk *d;		/* the secondary's, or */
	struct primary_disk *pd;	/* the primary's (set under role) */
	const struct config_disk *cd;
	uint64_t size;
	/* Whether the kernel may hold cached pages of this file: the open
	 * files that use the cache, and a flag set by every such open and
	 * cleared by the invalidation that follows the last close.
	 */
	atomic_uint cached_opens;
	atomic_bool may_cache;
	/* The file's owner, group and mode: the config's, then chown's. */
	atomic_uint uid, gid, mode;
};

struct fusefs {
	struct fuse_session *se;
	struct secondary *r;		/* NULL on a primary */
	struct primary *p;		/* NULL on a secondary; under role */
	/* Protect in place swaps the disks' engine: view I/O holds role
	 * shared, the switch exclusive (so it drains what is in flight).
	 */
	pthread_rwlock_t role;
	struct protect *protect;
	const struct config *cfg;
	const struct colo_status_part *parts;
	size_t nparts;
	bool mounted;
	bool signals;		/* fuse_set_signal_handlers succeeded */
	bool stop_handlers;	/* ours for SIGTERM and SIGINT too */
	atomic_uint own_opens;	/* disk files open, without a holder */
	atomic_uint *disk_opens; /* own_opens, or the holder's count */
	bool held;		/* resumed on a holder's /dev/fuse file */
	/* The kernel takes spliced replies (set at INIT): memory replies
	 * then go by reference (fuse-pages.c); else libfuse would read them
	 * back out of the pipe.
	 */
	atomic_bool splice_write;
	uint64_t epoch;		/* a snapshot fh's top 16 bits (struct snap) */
	pthread_mutex_t snap_lock;	/* leaf: the table below only */
	struct snap *snaps;		/* protected by snap_lock */
	uint64_t snap_serial;		/* protected by snap_lock */
	atomic_bool stop_pending;	/* a stop signal waits for them */
	atomic_uint stop_signals;	/* stop signals received */
	atomic_int last_signal;
	int stop_pipe[2];	/* the handler wakes stop_thread */
	pthread_t stop_thread;
	bool stop_thread_running;
	struct colo_status_part *all_parts;	/* parts, then ours */
	struct timespec t0;	/* every timestamp */
	uid_t uid;		/* of the root and .colo files: ours */
	gid_t gid;
	size_t ndisks;
	struct fusefs_disk *disks;

	/* The metrics_file writer; stop and its cond under metrics_lock. */
	pthread_t metrics_thread;
	bool metrics_started;
	pthread_mutex_t metrics_lock;
	pthread_cond_t metrics_cond;
	bool metrics_stop;		/* protected by metrics_lock */
};

/* A .colo/status (error, metrics, errors) open: the text as of the open,
 * in the table fs->snaps under its fh.  The table holds one reference and
 * a read in progress another: the kernel may send RELEASE as soon as it
 * has a read's reply, while the reading thread is still returning from
 * fuse_reply_buf (and ASan's writev interceptor looks at the buffer after
 * the write).
 *
 * The fh of a snapshot this process made:
 *
 *    63        48 47              24 23            0
 *   +------------+------------------+--------------+
 *   |   epoch    |   text length    |    serial    |
 *   +------------+------------------+--------------+
 *
 * After a restart the kernel sends the next process the reads and
 * releases of files the last one opened: a monitor's cat, or colofsctl's
 * poll of the status while "restart" runs, whose open the old process
 * answered and whose read the new one gets.  Their texts died with the
 * old process; the fh says what is left:
 *   first read (offset 0)        a fresh snapshot, taken now and kept in
 *                                the table under that fh for the reads
 *                                that follow: the reader sees the file as
 *                                if it had opened it now
 *   offset >= the fh's length    end of file: the reader had all the text
 *   any other offset             ESTALE: the rest of a text read in part
 *                                is gone, and another text's tail would
 *                                be a lie
 * The epoch tells this process's fhs from the last ones': under a holder,
 * the restart count (distinct for 32767 restarts in a row).  It is even:
 * earlier colofs kept a pointer under an odd epoch, so a length is read
 * only from an even one.  A text too long for the field gets
 * FH_LEN_UNKNOWN, which never ends a file.
 */
struct snap {
	uint64_t fh;
	char *text;
	size_t len;
	atomic_int refs;
	struct snap *next;	/* protected by fs->snap_lock */
};

#define FH_EPOCH_SHIFT 48
#define FH_LEN_SHIFT 24
#define FH_FIELD ((UINT64_C(1) << FH_LEN_SHIFT) - 1)
#define FH_LEN_UNKNOWN FH_FIELD
#define FH_EPOCH(fh) ((fh) >> FH_EPOCH_SHIFT)
#define FH_LEN(fh) (((fh) >> FH_LEN_SHIFT) & FH_FIELD)
#define FH_LEN_KNOWN(fh) \
	(!(FH_EPOCH(fh) & 1) && FH_LEN(fh) != FH_LEN_UNKNOWN)

static void
snap_put(struct snap *s)
{
	if (s == NULL)
		return;
	if (atomic_fetch_sub(&s->refs, 1) == 1) {
		free(s->text);
		free(s);
	}
}

/* The snapshot under fh, or NULL; fs->snap_lock held. */
static struct snap *
snap_find_locked(struct fusefs *fs, uint64_t fh)
{
	struct snap *s;

	for (s = fs->snaps; s != NULL; s = s->next) {
		if (s->fh == fh)
			break;
	}
	return s;
}

/* The snapshot under fh with a reference for the caller, or NULL. */
static struct snap *
snap_get(struct fusefs *fs, uint64_t fh)
{
	struct snap *s;

	pthread_mutex_lock(&fs->snap_lock);
	s = snap_find_locked(fs, fh);
	if (s)
		atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&fs->snap_lock);
	return s;
}

/* Takes the snapshot under fh out of the table: the table's reference
 * becomes the caller's.  NULL if there is none.
 */
static struct snap *
snap_take(struct fusefs *fs, uint64_t fh)
{
	struct snap **pp, *s = NULL;

	pthread_mutex_lock(&fs->snap_lock);
	for (pp = &fs->snaps; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->fh == fh) {
			s = *pp;
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_unlock(&fs->snap_lock);
	return s;
}

static int snap_text(struct fusefs *fs, fuse_ino_t ino, char **text,
		     size_t *len);

/* A snapshot of ino's text taken now, in the table under fh (a file the
 * last process opened) or, with fh 0, under a new fh of ours; with a
 * reference for the caller.  If another read took one for fh first, that
 * one.  NULL with errno on failure.
 */
static struct snap *
snap_new(struct fusefs *fs, fuse_ino_t ino, uint64_t fh)
{
	struct snap *s = calloc(1, sizeof *s), *had;
	uint64_t len;
	int err;

	if (!s)
		return NULL;
	if (snap_text(fs, ino, &s->text, &s->len) == -1) {
		err = errno;
		free(s);
		errno = err;
		return NULL;
	}
	atomic_init(&s->refs, 2);	/* the table's and the caller's */
	len = s->len < FH_LEN_UNKNOWN ? s->len : FH_LEN_UNKNOWN;
	pthread_mutex_lock(&fs->snap_lock);
	if (fh == 0) {
		do {
			fs->snap_serial = (fs->snap_serial + 1) & FH_FIELD;
			s->fh = fs->epoch << FH_EPOCH_SHIFT |
				len << FH_LEN_SHIFT | fs->snap_serial;
		} while (snap_find_locked(fs, s->fh));
	} else if ((had = snap_find_locked(fs, fh)) != NULL) {
		atomic_fetch_add(&had->refs, 1);
		pthread_mutex_unlock(&fs->snap_lock);
		free(s->text);
		free(s);
		return had;
	} else {
		s->fh = fh;
	}
	s->next = fs->snaps;
	fs->snaps = s;
	pthread_mutex_unlock(&fs->snap_lock);
	return s;
}

/* Decrements a count of opens, never below zero (after a restart the
 * kernel closes files a new process did not count): the value before.
 */
static unsigned
dec_floor(atomic_uint *v)
{
	unsigned n = atomic_load(v);

	while (n > 0 && !atomic_compare_exchange_weak(v, &n, n - 1))
		;
	return n;
}

/* The one place a core failure becomes a FUSE error.  An errno of 0 would
 * read as success (or a short write) to the kernel: make it EIO.
 */
static void
reply_errno(fuse_req_t req)
{
	int err = errno;

	if (err == 0) {
		log_warn("an operation failed without an errno; replying EIO");
		err = EIO;
	}
	fuse_reply_err(req, err);
}

static struct fusefs *
req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fusefs_disk *
ino_disk(struct fusefs *fs, fuse_ino_t ino)
{
	if (ino < INO_DISK0 || ino - INO_DISK0 >= fs->ndisks)
		return NULL;
	return &fs->disks[ino - INO_DISK0];
}

/* ---- secondary or primary ---- */

/* The disk I/O holds role shared, and keeps errno. */
static void
role_rdlock(struct fusefs *fs)
{
	pthread_rwlock_rdlock(&fs->role);
}

static void
role_unlock(struct fusefs *fs)
{
	int saved = errno;

	pthread_rwlock_unlock(&fs->role);
	errno = saved;
}

/* The primary, or NULL: it never goes once set. */
static struct primary *
role_primary(struct fusefs *fs)
{
	struct primary *p;

	role_rdlock(fs);
	p = fs->p;
	role_unlock(fs);
	return p;
}

static int
disk_read(struct fusefs_disk *dk, void *buf, size_t len, uint64_t off)
{
	int rc;

	role_rdlock(dk->fs);
	rc = dk->pd ? primary_read(dk->pd, buf, len, off)
		    : secondary_view_read(dk->d, buf, len, off);
	role_unlock(dk->fs);
	return rc;
}

static int
disk_write(struct fusefs_disk *dk, const void *buf, size_t len, uint64_t off)
{
	int rc;

	role_rdlock(dk->fs);
	rc = dk->pd ? primary_write(dk->pd, buf, len, off)
		    : secondary_view_write(dk->d, buf, len, off);
	role_unlock(dk->fs);
	return rc;
}

/* punch: PUNCH_HOLE (holes may be punched), else ZERO_RANGE (the blocks
 * stay allocated).
 */
static int
disk_zero(struct fusefs_disk *dk, uint64_t off, uint64_t len, bool punch)
{
	int rc;

	role_rdlock(dk->fs);
	if (dk->pd)
		rc = punch ? primary_punch(dk->pd, off, len)
			   : primary_zero(dk->pd, off, len);
	else if (punch)
		rc = secondary_view_punch(dk->d, off, len);
	else
		rc = secondary_view_zero(dk->d, off, len);
	role_unlock(dk->fs);
	return rc;
}

static int
disk_flush(struct fusefs_disk *dk)
{
	int rc;

	role_rdlock(dk->fs);
	rc = dk->pd ? primary_flush(dk->pd) : secondary_view_flush(dk->d);
	role_unlock(dk->fs);
	return rc;
}

static void
clear_error(struct fusefs *fs)
{
	struct primary *p = role_primary(fs);

	if (p)
		primary_clear_error(p);
	else
		secondary_clear_error(fs->r);
}

static int
status_text(struct fusefs *fs, char **text, size_t *len)
{
	struct primary *p = role_primary(fs);

	if (p)
		return colo_primary_status_text(p, fs->cfg, fs->parts,
						fs->nparts, text, len);
	return colo_secondary_status_text(fs->r, fs->cfg, fs->parts, fs->nparts,
					  text, len);
}

/* A primary has no metrics yet (its status is in .colo/status). */
static int
metrics_text(struct fusefs *fs, char **text, size_t *len)
{
	if (role_primary(fs)) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return colo_secondary_metrics_text(fs->r, fs->cfg, fs->parts,
					   fs->nparts, text, len);
}

static int
errors_text(struct fusefs *fs, char **text, size_t *len)
{
	return colo_errors_text(fs->p ? primary_errors(fs->p) :
				secondary_errors(fs->r), text, len);
}

static int
error_text(struct fusefs *fs, char **text, size_t *len)
{
	struct primary *p = role_primary(fs);

	if (p)
		return colo_primary_error_text(p, text, len);
	return colo_secondary_error_text(fs->r, text, len);
}

/* The text of a .colo snapshot file (INO_SNAP): 0, or -1 with errno. */
static int
snap_text(struct fusefs *fs, fuse_ino_t ino, char **text, size_t *len)
{
	switch (ino) {
	case INO_STATUS:
		return status_text(fs, text, len);
	case INO_METRICS:
		return metrics_text(fs, text, len);
	case INO_ERRORS:
		return errors_text(fs, text, len);
	default:
		return error_text(fs, text, len);
	}
}

/* 0 and *st, or -1 (no such inode). */
static int
fill_attr(struct fusefs *fs, fuse_ino_t ino, struct stat *st)
{
	struct fusefs_disk *dk;

	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atim = st->st_mtim = st->st_ctim = fs->t0;
	st->st_blksize = 4096;
	switch (ino) {
	case INO_ROOT:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 3;
		return 0;
	case INO_COLO:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case INO_CTL:
		st->st_mode = S_IFREG | 0200;
		st->st_nlink = 1;
		return 0;
	case INO_STATUS:
	case INO_METRICS:
	case INO_ERRORS:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		return 0;
	case INO_ERROR:
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		return 0;
	}
	dk = ino_disk(fs, ino);
	if (!dk)
		return -1;
	st->st_mode = S_IFREG | (atomic_load(&dk->mode) & 07777);
	st->st_nlink = 1;
	st->st_uid = atomic_load(&dk->uid);
	st->st_gid = atomic_load(&dk->gid);
	st->st_size = (off_t)dk->size;
	st->st_blocks = (blkcnt_t)(dk->size / 512);
	return 0;
}

static void
reply_entry(fuse_req_t req, struct fusefs *fs, fuse_ino_t ino)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof e);
	e.ino = ino;
	e.generation = 1;
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ATTR_TIMEOUT;
	fill_attr(fs, ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void
op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fusefs *fs = userdata;

	handover_test_hang("COLOFS_TEST_HANG_INIT");
	/* libfuse caps max_write to its buffer (1 MiB + header). */
	conn->max_write = MAX_IO;
	/* Must match the max_read mount option (libfuse checks). */
	conn->max_read = MAX_READ;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* Disk reads from the image are spliced into the reply. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	atomic_store(&fs->splice_write,
		     (conn->want & FUSE_CAP_SPLICE_WRITE) != 0);
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Our mtime never changes: invalidation is explicit (see above). */
	conn->want &= ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA |
				  FUSE_CAP_WRITEBACK_CACHE);
	log_debug("fuse: kernel %u.%u, max_write %u, max_read %u, "
		  "max_readahead %u", conn->proto_major, conn->proto_minor,
		  conn->max_write, conn->max_read, conn->max_readahead);
}

static void
op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fusefs *fs = req_fs(req);
	size_t i;

	if (parent == INO_ROOT) {
		if (strcmp(name, ".colo") == 0) {
			reply_entry(req, fs, INO_COLO);
			return;
		}
		for (i = 0; i < fs->ndisks; i++) {
			if (strcmp(name, fs->disks[i].cd->name) == 0) {
				reply_entry(req, fs, INO_DISK0 + i);
				return;
			}
		}
	} else if (parent == INO_COLO) {
		if (strcmp(name, "ctl") == 0) {
			reply_entry(req, fs, INO_CTL);
			return;
		}
		if (strcmp(name, "status") == 0) {
			reply_entry(req, fs, INO_STATUS);
			return;
		}
		if (strcmp(name, "error") == 0) {
			reply_entry(req, fs, INO_ERROR);
			return;
		}
		if (strcmp(name, "metrics") == 0) {
			reply_entry(req, fs, INO_METRICS);
			return;
		}
		if (strcmp(name, "errors") == 0) {
			reply_entry(req, fs, INO_ERRORS);
			return;
		}
	}
	fuse_reply_err(req, ENOENT);
}

static void
op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void
op_forget_multi(fuse_req_t req, size_t count,
		struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (fill_attr(req_fs(req), ino, &st) == -1)
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* The size never changes; ctl and error may be "truncated" (echo > ctl,
 * : > error, the latter clearing the error); a disk file's owner, group
 * and mode may change when allow_chown is set (the kernel has checked the
 * caller's right to); times are accepted and ignored (touch works).
 */
static void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	   struct fuse_file_info *fi)
{
	struct fusefs *fs = req_fs(req);
	struct fusefs_disk *dk = ino_disk(fs, ino);
	struct stat st;

	(void)fi;
	if (fill_attr(fs, ino, &st) == -1) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
		      FUSE_SET_ATTR_GID)) {
		if (!dk || !fs->cfg->allow_chown) {
			if (dk)
				log_info("%s: chown/chmod refused "
					 "(allow_chown = false)", dk->cd->name);
			fuse_reply_err(req, EPERM);
			return;
		}
		if (to_set & FUSE_SET_ATTR_UID)
			atomic_store(&dk->uid, attr->st_uid);
		if (to_set & FUSE_SET_ATTR_GID)
			atomic_store(&dk->gid, attr->st_gid);
		if (to_set & FUSE_SET_ATTR_MODE)
			atomic_store(&dk->mode, attr->st_mode & 07777);
		log_info("%s: now owner %u, group %u, mode %04o",
			 dk->cd->name, atomic_load(&dk->uid),
			 atomic_load(&dk->gid), atomic_load(&dk->mode));
		fill_attr(fs, ino, &st);
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (dk) {
			if ((uint64_t)attr->st_size != dk->size) {
				log_debug("%s: truncate to %lld refused",
					  dk->cd->name,
					  (long long)attr->st_size);
				fuse_reply_err(req, EPERM);
				return;
			}
		} else if (ino == INO_ERROR) {
			clear_error(fs);
		} else if (ino != INO_CTL) {
			fuse_reply_err(req, INO_SNAP(ino) ? EPERM :
				       EISDIR);
			return;
		}
	}
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* A disk file was closed: the last one ends a pending stop. */
static void
disk_closed(struct fusefs *fs)
{
	if (dec_floor(fs->disk_opens) == 1 &&
	    atomic_load(&fs->stop_pending)) {
		log_info("the last disk file was closed: stopping");
		fuse_loop_exit(fs->se);
	}
}

/* fuse_reply_open for a disk file, plus FOPEN_PARALLEL_DIRECT_WRITES on a
 * direct_io open, which libfuse 3.14's fuse_file_info cannot carry.
 * Without it the kernel holds the inode's lock across each write request,
 * so a file's writes reach us one at a time (a VM's I/O threads, fio's
 * jobs); with it they run in parallel and the engines order the ones that
 * overlap (range locks), as they do for the NBD writes.  The kernel still
 * takes the lock exclusively while any open of the inode is cached
 * (page_cache) and for a write past the end.  fuse_reply_iov sends this
 * as the reply's body, as fuse_reply_open would.
 */
static int
reply_open_disk(fuse_req_t req, const struct fuse_file_info *fi)
{
	struct fuse_open_out o;
	struct iovec iov;

	memset(&o, 0, sizeof o);
	o.fh = fi->fh;
	if (fi->direct_io)
		o.open_flags |= FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	if (fi->keep_cache)
		o.open_flags |= FOPEN_KEEP_CACHE;
	iov.iov_base = &o;
	iov.iov_len = sizeof o;
	return fuse_reply_iov(req, &iov, 1);
}

static void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fusefs *fs = req_fs(req);
	struct fusefs_disk *dk = ino_disk(fs, ino);
	int acc = fi->flags & O_ACCMODE;
	struct snap *s;

	if (dk) {
		if (fi->flags & O_TRUNC) {
			fuse_reply_err(req, EPERM);
			return;
		}
		/* Without page_cache, no disk page is ever cached: a
		 * checkpoint then has nothing to invalidate.  In state none
		 * primary writes change V under the cache; O_DIRECT users
		 * (QEMU's cache=none) do not want it.
		 */
		if (!fs->cfg->page_cache ||
		    (fs->r && secondary_state(fs->r) == SECONDARY_NONE) ||
		    (fi->flags & O_DIRECT)) {
			fi->direct_io = 1;
			fi->fh = FH_DISK(ino - INO_DISK0, 0);
		} else {
			fi->keep_cache = 1;
			fi->fh = FH_DISK(ino - INO_DISK0, 1);
			atomic_fetch_add(&dk->cached_opens, 1);
			atomic_store(&dk->may_cache, true);
		}
		atomic_fetch_add(fs->disk_opens, 1);
		if (reply_open_disk(req, fi) == -ENOENT) {
			if (FH_CACHED(fi->fh))
				dec_floor(&dk->cached_opens);
			disk_closed(fs);
		}
		return;
	}
	switch (ino) {
	case INO_CTL:
		if (acc != O_WRONLY) {
			fuse_reply_err(req, EACCES);
			return;
		}
		fi->direct_io = 1;
		fi->nonseekable = 1;
		fuse_reply_open(req, fi);
		return;
	case INO_STATUS:
	case INO_ERROR:
	case INO_METRICS:
	case INO_ERRORS:
		if (ino != INO_ERROR && acc != O_RDONLY) {
			fuse_reply_err(req, EACCES);
			return;
		}
		if (ino == INO_ERROR && (fi->flags & O_TRUNC))
			clear_error(fs);
		s = snap_new(fs, ino, 0);
		if (!s) {
			reply_errno(req);
			return;
		}
		fi->fh = s->fh;
		fi->direct_io = 1;
		/* -ENOENT: the opener was interrupted, no release will come. */
		if (fuse_reply_open(req, fi) == -ENOENT)
			snap_put(snap_take(fs, s->fh));
		snap_put(s);
		return;
	case INO_ROOT:
	case INO_COLO:
		fuse_reply_err(req, EISDIR);
		return;
	}
	fuse_reply_err(req, ENOENT);
}

static void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fusefs_disk *dk = ino_disk(req_fs(req), ino);

	if (dk && FH_CACHED(fi->fh))
		dec_floor(&dk->cached_opens);
	if (dk)
		disk_closed(req_fs(req));
	if (INO_SNAP(ino))
		snap_put(snap_take(req_fs(req), fi->fh));
	fuse_reply_err(req, 0);
}

/* Replies to a disk read straight from where the view's bytes live, when
 * they live in one place: the image's or a file buffer's fd (spliced by
 * libfuse when the kernel allows, so page-cache pages are never copied
 * into this process) or a memory buffer (lent to the kernel by
 * fuse_reply_pages, copied once there; small replies are copied in).
 * That is the common case of large reads.  The range stays locked until
 * the reply is sent: the lock exists to order exactly this read.
 * Returns false, having replied nothing, when the range is in several
 * layers or has no fd (qcow2): then the caller copies.  (A reply gathered
 * from several fd and memory pieces came back short from libfuse 3.14,
 * so only single pieces go this way.)
 */
static bool
read_in_place_locked(fuse_req_t req, struct fusefs_disk *dk, size_t size,
		     uint64_t off)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	struct secondary_seg seg;
	struct secondary_read rd;

	/* A primary's raw image: straight from its fd. */
	if (dk->pd) {
		if (primary_disk_fd(dk->pd) < 0)
			return false;
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK |
				  FUSE_BUF_FD_RETRY;
		bv.buf[0].fd = primary_disk_fd(dk->pd);
		bv.buf[0].pos = (off_t)off;
		fuse_reply_data(req, &bv, 0);
		return true;
	}
	if (secondary_view_read_begin(dk->d, off, size, &rd, &seg) == -1) {
		if (errno == EAGAIN)
			return false;
		reply_errno(req);
		return true;
	}
	if (seg.fd >= 0) {
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK |
				  FUSE_BUF_FD_RETRY;
		bv.buf[0].fd = seg.fd;
		bv.buf[0].pos = (off_t)seg.pos;
	} else if (atomic_load(&dk->fs->splice_write) &&
		   fuse_reply_pages(req, seg.mem, size)) {
		secondary_view_read_end(&rd);
		return true;
	} else
		bv.buf[0].mem = (void *)seg.mem;
	fuse_reply_data(req, &bv, 0);
	secondary_view_read_end(&rd);
	return true;
}

static bool
read_in_place(fuse_req_t req, struct fusefs_disk *dk, size_t size,
	      uint64_t off)
{
	bool done;

	role_rdlock(dk->fs);
	done = read_in_place_locked(req, dk, size, off);
	role_unlock(dk->fs);
	return done;
}

static void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	struct fusefs *fs = req_fs(req);
	struct fusefs_disk *dk = ino_disk(fs, ino);
	struct snap *s;
	void *buf;
	int err;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (INO_SNAP(ino)) {
		if (handover_test_once("COLOFS_TEST_ESTALE_ONCE")) {
			fuse_reply_err(req, ESTALE);
			return;
		}
		/* An fh not in the table: another process's (struct snap). */
		s = snap_get(fs, fi->fh);
		if (!s && FH_EPOCH(fi->fh) != fs->epoch) {
			if (off > 0 && FH_LEN_KNOWN(fi->fh) &&
			    (uint64_t)off >= FH_LEN(fi->fh)) {
				fuse_reply_buf(req, NULL, 0);
				return;
			}
			if (off == 0) {
				s = snap_new(fs, ino, fi->fh);
				if (!s) {
					reply_errno(req);
					return;
				}
			}
		}
		if (!s) {
			fuse_reply_err(req, ESTALE);
			return;
		}
		if ((uint64_t)off >= s->len)
			fuse_reply_buf(req, NULL, 0);
		else
			fuse_reply_buf(req, s->text + off,
				       s->len - off < size ? s->len - off :
				       size);
		snap_put(s);
		return;
	}
	if (!dk) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if ((uint64_t)off >= dk->size || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > dk->size - (uint64_t)off)
		size = dk->size - (uint64_t)off;
	if (read_in_place(req, dk, size, (uint64_t)off))
		return;
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (disk_read(dk, buf, size, (uint64_t)off) == -1) {
		err = errno;
		free(buf);
		errno = err;
		reply_errno(req);
		return;
	}
	fuse_reply_buf(req, buf, size);
	free(buf);
}

/* Drops the kernel's cached pages of every disk file: V has changed.
 * Skips the disks that cannot have any: no cached open since the last
 * invalidation (QEMU with cache=none, O_DIRECT), so that a checkpoint
 * costs no page cache walk there.  An open racing with this either sees
 * its flag kept, or opens after the checkpoint took effect and can only
 * cache the new view.
 */
static void
invalidate_disks(struct fusefs *fs)
{
	struct fusefs_disk *dk;
	size_t i;
	int rc;

	for (i = 0; i < fs->ndisks; i++) {
		dk = &fs->disks[i];
		if (!atomic_exchange(&dk->may_cache, false) &&
		    atomic_load(&dk->cached_opens) == 0)
			continue;
		if (atomic_load(&dk->cached_opens) > 0)
			atomic_store(&dk->may_cache, true);
		rc = fuse_lowlevel_notify_inval_inode(fs->se, INO_DISK0 + i,
						      0, 0);
		/* ENOENT: the kernel has no inode, hence no pages, for it. */
		if (rc != 0 && rc != -ENOENT)
			log_warn("%s: invalidating the page cache: %s",
				 fs->disks[i].cd->name, strerror(-rc));
	}
}

/* Before a checkpoint or stop drops the buffers: writes back the pages
 * dirtied through a writable shared mmap (page_cache = true), so that they
 * land in the epoch they were written in and are dropped with it, not
 * written into the next one.  An invalidation does it: the kernel
 * launders (writes back and waits for) each dirty page it drops.
 */
static void
writeback_disks(struct fusefs *fs)
{
	struct fusefs_disk *dk;
	size_t i;
	int rc;

	for (i = 0; i < fs->ndisks; i++) {
		dk = &fs->disks[i];
		if (!atomic_load(&dk->may_cache) &&
		    atomic_load(&dk->cached_opens) == 0)
			continue;
		rc = fuse_lowlevel_notify_inval_inode(fs->se, INO_DISK0 + i,
						      0, 0);
		if (rc != 0 && rc != -ENOENT)
			log_warn("%s: writing back dirty pages: %s",
				 fs->disks[i].cd->name, strerror(-rc));
	}
}

/* "restart": a planned restart under a holder.  The loop ends once the
 * requests in progress are answered; what comes meanwhile waits in the
 * kernel for the next process.  In running the buffers go to the next
 * process through buffer_dir (durable_handover); without one they would
 * be lost, so it is refused.  True when buf was "restart" (answered).
 */
static bool
ctl_restart(fuse_req_t req, struct fusefs *fs, const char *buf, size_t size,
	    off_t off)
{
	static const char word[] = "restart";
	const char *why = NULL;
	size_t n = size;

	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	if (off != 0 || n != sizeof word - 1 || memcmp(buf, word, n) != 0)
		return false;
	if (handover_restart_check(&why) == -1) {
		/* errno set */
	} else if (fs->r && secondary_state(fs->r) == SECONDARY_RUNNING &&
		   !fs->cfg->buffer_dir) {
		why = "restart: refused in state running without a "
		      "buffer_dir (the buffers would be lost): set "
		      "buffer_dir, or stop or failover first";
		errno = EBUSY;
	}
	if (why) {
		int err = errno;

		if (fs->r)
			secondary_record_error(fs->r, "%s", why);
		else
			primary_record_error(fs->p, "%s", why);
		log_warn("ctl: %s", why);
		fuse_reply_err(req, err);
		return true;
	}
	log_info("ctl: restart: ending the session; the holder starts "
		 "the binary again");
	handover_request_restart();
	fuse_reply_write(req, size);
	fuse_loop_exit(fs->se);
	return true;
}

/* One write, one command: colo_secondary_ctl_parse refuses a piece of a longer
 * write (the kernel splits writes into MAX_IO requests) or one at an
 * offset, so nothing runs for them.
 */
static void
ctl_write(fuse_req_t req, struct fusefs *fs, const char *buf, size_t size,
	  off_t off)
{
	enum colo_cmd c;
	struct primary *p = role_primary(fs);
	char uri[COLO_URI_MAX];
	bool full;
	int rc;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (ctl_restart(req, fs, buf, size, off))
		return;
	/* A command racing a protect may still reach the secondary, where
	 * every word is a no-op in done.
	 */
	if (!p && fs->protect) {
		rc = colo_secondary_protect_parse(fs->r, buf, size,
						  (uint64_t) off, &full, uri,
						  sizeof uri);
		if (rc == 1 && fusefs_protect(fs, uri, full, true) == -1)
			reply_errno(req);
		else if (rc == 1)
			fuse_reply_write(req, size);
		if (rc != 0)
			return;
	}
	if (p) {
		if (colo_primary_ctl(p, buf, size, (uint64_t)off) == -1)
			reply_errno(req);
		else
			fuse_reply_write(req, size);
		return;
	}
	if (colo_secondary_ctl_parse(fs->r, buf, size, (uint64_t) off, &c) ==
	    -1) {
		reply_errno(req);
		return;
	}
	handover_test_hold("COLOFS_TEST_HOLD_CTL");
	if (c == COLO_CMD_CHECKPOINT || c == COLO_CMD_STOP)
		writeback_disks(fs);
	if (colo_secondary_ctl_run(fs->r, c) == -1) {
		reply_errno(req);
		return;
	}
	/* Checkpoints come every few seconds or faster: not for syslog. */
	if (c == COLO_CMD_CHECKPOINT)
		log_debug("ctl: checkpoint done");
	else
		log_info("ctl: %s done, state %s", colo_cmd_name(c),
			 secondary_state_name(secondary_state(fs->r)));
	invalidate_disks(fs);
	fuse_reply_write(req, size);
}

static void
op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	 off_t off, struct fuse_file_info *fi)
{
	struct fusefs *fs = req_fs(req);
	struct fusefs_disk *dk = ino_disk(fs, ino);

	(void)fi;
	if (ino == INO_CTL) {
		ctl_write(req, fs, buf, size, off);
		return;
	}
	if (ino == INO_ERROR) {
		clear_error(fs);
		fuse_reply_write(req, size);
		return;
	}
	if (!dk) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* The file never grows: a write that does not fit is refused. */
	if ((uint64_t)off > dk->size || size > dk->size - (uint64_t)off) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	handover_test_hang("COLOFS_TEST_HANG");
	handover_test_hold("COLOFS_TEST_HOLD_WRITE");
	if (size && disk_write(dk, buf, size, (uint64_t)off) == -1)
		reply_errno(req);
	else
		fuse_reply_write(req, size);
}

static void
op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void
op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	 struct fuse_file_info *fi)
{
	struct fusefs_disk *dk = ino_disk(req_fs(req), ino);

	(void)datasync;
	(void)fi;
	if (dk && disk_flush(dk) == -1)
		reply_errno(req);
	else
		fuse_reply_err(req, 0);
}

static void
op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
	     off_t len, struct fuse_file_info *fi)
{
	struct fusefs_disk *dk = ino_disk(req_fs(req), ino);
	uint64_t o = (uint64_t)off, l = (uint64_t)len;

	(void)fi;
	if (!dk) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	switch (mode) {
	case 0:
		/* Allocating within the file: nothing to do.  Beyond: the
		 * file cannot grow.
		 */
		fuse_reply_err(req, o > dk->size || l > dk->size - o ?
			       ENOSPC : 0);
		return;
	case FALLOC_FL_ZERO_RANGE:
		if (o > dk->size || l > dk->size - o) {
			fuse_reply_err(req, ENOSPC);
			return;
		}
		break;
	case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
	case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE:
		/* As on a regular file, the part past the end is moot. */
		if (o >= dk->size) {
			fuse_reply_err(req, 0);
			return;
		}
		if (l > dk->size - o)
			l = dk->size - o;
		break;
	default:
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (disk_zero(dk, o, l, mode & FALLOC_FL_PUNCH_HOLE) == -1)
		reply_errno(req);
	else
		fuse_reply_err(req, 0);
}

static void
op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != INO_ROOT && ino != INO_COLO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fuse_reply_open(req, fi);
}

static void
op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	   struct fuse_file_info *fi)
{
	struct fusefs *fs = req_fs(req);
	static const char *const colo_names[] = {
		"ctl", "status", "error", "metrics", "errors"
	};
	size_t n, i, used = 0, need;
	char *buf;
	struct stat st;
	const char *name;
	fuse_ino_t eino;

	(void)fi;
	/* Entries: ".", "..", then .colo and the disks, or the .colo files. */
	n = 2 + (ino == INO_ROOT ? 1 + fs->ndisks :
		 sizeof colo_names / sizeof colo_names[0]);
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (i = off < 0 ? 0 : (size_t)off; i < n; i++) {
		if (i == 0) {
			name = ".";
			eino = ino;
		} else if (i == 1) {
			name = "..";
			eino = INO_ROOT;
		} else if (ino == INO_ROOT && i == 2) {
			name = ".colo";
			eino = INO_COLO;
		} else if (ino == INO_ROOT) {
			name = fs->disks[i - 3].cd->name;
			eino = INO_DISK0 + (i - 3);
		} else {
			name = colo_names[i - 2];
			eino = INO_CTL + (i - 2);
		}
		fill_attr(fs, eino, &st);
		need = fuse_add_direntry(req, buf + used, size - used, name,
					 &st, (off_t)(i + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void
op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fusefs *fs = req_fs(req);
	struct statvfs sv;
	uint64_t total = 0;
	size_t i;

	(void)ino;
	for (i = 0; i < fs->ndisks; i++)
		total += fs->disks[i].size;
	memset(&sv, 0, sizeof sv);
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = total / 4096;
	sv.f_files = 7 + fs->ndisks;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

/* The namespace is fixed. */
static void
op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	  struct fuse_file_info *fi)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	fuse_reply_err(req, EPERM);
}

static void
op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	 dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, EPERM);
}

static void
op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent;
	(void)name;
	(void)mode;
	fuse_reply_err(req, EPERM);
}

static void
op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void
op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
	  fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, EPERM);
}

static const struct fuse_lowlevel_ops fusefs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.release = op_release,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.create = op_create,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.rename = op_rename,
};

/* libfuse's own messages go where ours go. */
static void
fuse_log_to_ours(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	if (level <= FUSE_LOG_ERR)
		log_error("fuse: %s", msg);
	else if (level <= FUSE_LOG_WARNING)
		log_warn("fuse: %s", msg);
	else if (level <= FUSE_LOG_INFO)
		log_info("fuse: %s", msg);
	else
		log_debug("fuse: %s", msg);
}

/* Un-escapes a /proc/self/mountinfo path field (\040 for a space...). */
static void
unescape_octal(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/* 1 if path (canonical) is a mount point (of type fstype, unless NULL),
 * 0 if not, -1 on error.
 */
static int
find_mount(const char *path, const char *fstype)
{
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *mnt, *dash;
	size_t cap = 0, n = fstype ? strlen(fstype) : 0;
	int found = 0, i;

	if (!fp)
		return -1;
	while (!found && getline(&line, &cap, fp) != -1) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE ... */
		dash = strstr(line, " - ");
		if (fstype && (!dash || strncmp(dash + 3, fstype, n) != 0 ||
			       dash[3 + n] != ' '))
			continue;
		mnt = line;
		for (i = 0; i < 4 && mnt; i++) {
			mnt = strchr(mnt, ' ');
			if (mnt)
				mnt++;
		}
		if (!mnt)
			continue;
		mnt[strcspn(mnt, " ")] = '\0';
		unescape_octal(mnt);
		found = strcmp(mnt, path) == 0;
	}
	free(line);
	fclose(fp);
	return found;
}

bool
fusefs_colofs_mounted(const char *path)
{
	char real[PATH_MAX];

	return realpath(path, real) && find_mount(real, "fuse.colofs") == 1;
}

int
fusefs_check_mountpoint(const char *path)
{
	struct stat st;
	struct statvfs sv;
	char real[PATH_MAX];

	if (stat(path, &st) == -1) {
		if (errno == ENOTCONN)
			log_error("mountpoint %s: %m: a dead FUSE mount (its "
				  "daemon was killed?); remove it with: "
				  "fusermount3 -u %s", path, path);
		else
			log_error("mountpoint %s: %m", path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		log_error("mountpoint %s: not a directory", path);
		return -1;
	}
	if (!realpath(path, real)) {
		log_error("mountpoint %s: %m", path);
		return -1;
	}
	switch (find_mount(real, NULL)) {
	case 1:
		/* statfs always reaches the filesystem: a dead FUSE daemon
		 * shows as ENOTCONN (stat may be answered from the cache).
		 */
		if (statvfs(real, &sv) == -1 && errno == ENOTCONN) {
			log_error("mountpoint %s: a dead FUSE mount (its daemon "
				  "was killed?); remove it with: fusermount3 -u "
				  "%s", path, path);
			errno = ENOTCONN;
			return -1;
		}
		errno = EBUSY;
		log_error("mountpoint %s: already mounted (another colofs? "
			  "unmount it first)", path);
		return -1;
	case -1:
		log_warn("cannot read /proc/self/mountinfo: %m; not checking "
			 "whether %s is mounted already", path);
		break;
	}
	return 0;
}

/* ---- stopping (see the top) ---- */

static struct fusefs *stop_fs;	/* the instance the handler serves */

static void
stop_handler(int sig)
{
	struct fusefs *fs = stop_fs;
	int saved = errno;
	ssize_t n;

	if (fs == NULL)
		return;
	atomic_store(&fs->last_signal, sig);
	atomic_store(&fs->stop_pending, true);
	if (atomic_fetch_add(&fs->stop_signals, 1) > 0 ||
	    atomic_load(fs->disk_opens) == 0)
		fuse_loop_exit(fs->se);
	n = write(fs->stop_pipe[1], "", 1);
	(void) n;
	errno = saved;
}

/* Says in the log what the handler could not. */
static void *
stop_main(void *arg)
{
	struct fusefs *fs = arg;
	char c;

	while (read(fs->stop_pipe[0], &c, 1) == 1) {
		int sig = atomic_load(&fs->last_signal);
		unsigned n = atomic_load(fs->disk_opens);

		if (fuse_loop_exiting(fs->se))
			log_info("SIG%s: stopping", sigabbrev_np(sig));
		else
			log_warn("SIG%s while %u disk file%s open: "
				 "serving until the last is closed, so that "
				 "the VM keeps its disk (a second signal "
				 "stops at once)", sigabbrev_np(sig), n,
				 n == 1 ? " is" : "s are");
	}
	return NULL;
}

static int
stop_handlers_install(struct fusefs *fs)
{
	struct sigaction sa;
	sigset_t all, old;
	int err;

	if (pipe2(fs->stop_pipe, O_CLOEXEC) == -1) {
		log_error("pipe: %m");
		return -1;
	}
	/* The thread must not take the signals the loop should. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&fs->stop_thread, NULL, stop_main, fs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		errno = err;
		log_error("start the stop thread: %m");
		return -1;
	}
	fs->stop_thread_running = true;
	stop_fs = fs;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = stop_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) == -1 ||
	    sigaction(SIGINT, &sa, NULL) == -1) {
		log_error("sigaction: %m");
		return -1;
	}
	fs->stop_handlers = true;
	return 0;
}

static void
stop_handlers_remove(struct fusefs *fs)
{
	struct sigaction sa;

	if (fs->stop_handlers) {
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		fs->stop_handlers = false;
	}
	stop_fs = NULL;
	if (fs->stop_thread_running) {
		close(fs->stop_pipe[1]);
		fs->stop_pipe[1] = -1;
		pthread_join(fs->stop_thread, NULL);
		fs->stop_thread_running = false;
	}
	if (fs->stop_pipe[0] != -1)
		close(fs->stop_pipe[0]);
	if (fs->stop_pipe[1] != -1)
		close(fs->stop_pipe[1]);
	fs->stop_pipe[0] = fs->stop_pipe[1] = -1;
}

static void
fusefs_status(void *opaque, FILE *fp)
{
	struct fusefs *fs = opaque;

	fprintf(fp, "disk_files_open=%u\n", atomic_load(fs->disk_opens));
	fprintf(fp, "stop_pending=%d\n",
		atomic_load(&fs->stop_pending) ? 1 : 0);
}

/* A session with cfg's mount options: the same for a holder's mount and
 * every worker that resumes it (the INIT a worker replays must give the
 * same reply).
 */
static struct fuse_session *
session_new(const struct config *cfg, const struct fuse_lowlevel_ops *ops,
	    size_t opsize, void *userdata)
{
	struct fuse_session *se;
	char opts[256];
	char *argv[4];
	struct fuse_args args;

	fuse_set_log_func(fuse_log_to_ours);
	snprintf(opts, sizeof opts,
		 "fsname=colofs,subtype=colofs,default_permissions,"
		 "max_read=%d%s", MAX_READ,
		 cfg->allow_other ? ",allow_other" : "");
	argv[0] = (char *)"colofs";
	argv[1] = (char *)"-o";
	argv[2] = opts;
	argv[3] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(3, argv);
	se = fuse_session_new(&args, ops, opsize, userdata);
	fuse_opt_free_args(&args);
	if (!se)
		log_error("cannot create the FUSE session");
	return se;
}

void *
fusefs_hold(const struct config *cfg, int *fd)
{
	static const struct fuse_lowlevel_ops none;
	struct fuse_session *se;

	if (fusefs_check_mountpoint(cfg->mountpoint) == -1)
		return NULL;
	se = session_new(cfg, &none, sizeof none, NULL);
	if (!se)
		return NULL;
	if (fuse_session_mount(se, cfg->mountpoint) != 0) {
		log_error("cannot mount on %s", cfg->mountpoint);
		fuse_session_destroy(se);
		return NULL;
	}
	*fd = fuse_session_fd(se);
	return se;
}

void
fusefs_hold_release(void *mount)
{
	if (mount) {
		fuse_session_unmount(mount);
		fuse_session_destroy(mount);
	}
}

static struct fusefs *
create(const struct config *cfg, struct secondary *r, struct primary *p,
       const struct colo_status_part *parts, size_t nparts)
{
	struct fusefs *fs;
	size_t i;
	int saved, held_fd = handover_take_fd("fuse");
	struct holder_state *hs = held_fd >= 0 ? handover_state() : NULL;

	if (held_fd < 0 && fusefs_check_mountpoint(cfg->mountpoint) == -1)
		return NULL;
	fs = calloc(1, sizeof *fs);
	if (!fs)
		return NULL;
	pthread_mutex_init(&fs->metrics_lock, NULL);
	pthread_cond_init(&fs->metrics_cond, NULL);
	fs->r = r;
	fs->p = p;
	{
		pthread_rwlockattr_t ra;

		/* Writer first: a stream of VM I/O cannot starve a protect. */
		pthread_rwlockattr_init(&ra);
		pthread_rwlockattr_setkind_np(
			&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&fs->role, &ra);
		pthread_rwlockattr_destroy(&ra);
	}
	fs->cfg = cfg;
	fs->stop_pipe[0] = fs->stop_pipe[1] = -1;
	fs->disk_opens = hs ? &hs->disk_opens : &fs->own_opens;
	/* Even, and not the last 32767 processes' (struct snap). */
	fs->epoch = hs ? (atomic_load(&hs->restarts) % 32767 + 1) << 1 : 2;
	pthread_mutex_init(&fs->snap_lock, NULL);
	fs->all_parts = calloc(nparts + 1, sizeof *fs->all_parts);
	if (!fs->all_parts)
		goto fail;
	if (nparts)
		memcpy(fs->all_parts, parts, nparts * sizeof *parts);
	fs->all_parts[nparts] = (struct colo_status_part){ fusefs_status, fs };
	fs->parts = fs->all_parts;
	fs->nparts = nparts + 1;
	fs->uid = geteuid();
	fs->gid = getegid();
	clock_gettime(CLOCK_REALTIME, &fs->t0);
	fs->ndisks = cfg->ndisks;
	fs->disks = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof *fs->disks);
	if (!fs->disks)
		goto fail;
	for (i = 0; i < cfg->ndisks; i++) {
		struct fusefs_disk *dk = &fs->disks[i];

		dk->fs = fs;
		dk->cd = &cfg->disks[i];
		if (p)
			dk->pd = primary_find_disk(p, cfg->disks[i].name);
		else
			dk->d = secondary_find_disk(r, cfg->disks[i].name);
		if (!dk->d && !dk->pd) {
			log_error("disk %s: not in the replica",
				  cfg->disks[i].name);
			errno = ENOENT;
			goto fail;
		}
		dk->size = p ? primary_disk_size(dk->pd) :
			   secondary_disk_size(dk->d);
		atomic_init(&dk->uid, cfg->disks[i].uid);
		atomic_init(&dk->gid, cfg->disks[i].gid);
		atomic_init(&dk->mode, cfg->disks[i].mode);
		/* Files the last process opened may have cached pages. */
		atomic_init(&dk->may_cache, held_fd >= 0 && cfg->page_cache);
	}
	fusefs_check_access(cfg);

	fs->se = session_new(cfg, &fusefs_ops, sizeof fusefs_ops, fs);
	if (!fs->se) {
		errno = EIO;
		goto fail;
	}
	if (fuse_set_signal_handlers(fs->se) != 0) {
		log_error("cannot install the signal handlers");
		errno = EIO;
		goto fail;
	}
	fs->signals = true;
	if (stop_handlers_install(fs) == -1) {
		errno = EIO;
		goto fail;
	}
	if (held_fd >= 0) {
		/* The holder mounted; it unmounts. */
		fs->held = true;
		if (fuse_resume(fs->se, held_fd) == -1) {
			errno = EIO;
			goto fail;
		}
		return fs;
	}
	if (fuse_session_mount(fs->se, cfg->mountpoint) != 0) {
		log_error("cannot mount on %s", cfg->mountpoint);
		errno = EIO;
		goto fail;
	}
	fs->mounted = true;
	log_info("mounted %zu disk%s on %s", cfg->ndisks,
		 cfg->ndisks == 1 ? "" : "s", cfg->mountpoint);
	return fs;
fail:
	saved = errno;
	fusefs_free(fs);
	errno = saved;
	return NULL;
}

/* metrics_file: written at once, then every METRICS_PERIOD seconds, and
 * a last time when the session ends (the final counters).  A failed
 * write is logged (once until one succeeds again) and retried next time.
 */
static void *
metrics_main(void *arg)
{
	struct fusefs *fs = arg;
	struct timespec deadline;
	bool stop = false, failing = false;

	while (!stop) {
		/* After a protect the secondary is idle: a primary has no
		 * metrics yet (see metrics_text).
		 */
		if (!role_primary(fs) &&
		    colo_secondary_metrics_write(fs->r, fs->cfg, fs->parts,
						 fs->nparts,
						 fs->cfg->metrics_file) == -1) {
			if (!failing)
				log_warn("metrics_file %s: not written; "
					 "retrying every %d s",
					 fs->cfg->metrics_file, METRICS_PERIOD);
			failing = true;
		} else {
			failing = false;
		}
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += METRICS_PERIOD;
		pthread_mutex_lock(&fs->metrics_lock);
		while (!fs->metrics_stop &&
		       pthread_cond_timedwait(&fs->metrics_cond,
					      &fs->metrics_lock,
					      &deadline) != ETIMEDOUT)
			;
		stop = fs->metrics_stop;
		pthread_mutex_unlock(&fs->metrics_lock);
	}
	if (!role_primary(fs))
		colo_secondary_metrics_write(fs->r, fs->cfg, fs->parts,
					     fs->nparts, fs->cfg->metrics_file);
	return NULL;
}

static void
metrics_start(struct fusefs *fs)
{
	int rc;

	if (!fs->cfg->metrics_file || fs->r == NULL)
		return;
	rc = pthread_create(&fs->metrics_thread, NULL, metrics_main, fs);
	if (rc != 0) {
		log_error("metrics_file: cannot start its thread: %s",
			  strerror(rc));
		return;
	}
	fs->metrics_started = true;
}

static void
metrics_stop(struct fusefs *fs)
{
	if (!fs->metrics_started)
		return;
	pthread_mutex_lock(&fs->metrics_lock);
	fs->metrics_stop = true;
	pthread_cond_signal(&fs->metrics_cond);
	pthread_mutex_unlock(&fs->metrics_lock);
	pthread_join(fs->metrics_thread, NULL);
	fs->metrics_started = false;
}

void
fusefs_check_access(const struct config *cfg)
{
	uid_t me = geteuid();
	size_t i;

	for (i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *d = &cfg->disks[i];

		if (!cfg->allow_other && (d->uid != me || d->mode & 0077))
			log_warn("disk %s: allow_other = false: only uid %u "
				 "(colofs's user) can open %s/%s, whatever "
				 "its owner (%s) and mode (%04o); libvirt's "
				 "QEMU, or any other user, would be denied: "
				 "set allow_other = true", d->name,
				 (unsigned)me, cfg->mountpoint, d->name,
				 d->owner, (unsigned)d->mode);
		else if (!cfg->allow_chown && d->uid == 0 &&
			 (d->mode & 0007) == 0)
			log_info("disk %s: only %s (group %s, mode %04o) can "
				 "open %s/%s and allow_chown = false: set "
				 "owner to the hypervisor's user (libvirt: "
				 "libvirt-qemu)", d->name, d->owner, d->group,
				 (unsigned)d->mode, cfg->mountpoint, d->name);
	}
}

struct fusefs *
fusefs_new(const struct config *cfg, struct secondary *r,
	   const struct colo_status_part *parts, size_t nparts)
{
	return create(cfg, r, NULL, parts, nparts);
}

struct fusefs *
fusefs_new_primary(const struct config *cfg, struct primary *p,
		   const struct colo_status_part *parts, size_t nparts)
{
	return create(cfg, NULL, p, parts, nparts);
}

/* A disk read or write: served without waiting for another request. */
static bool
quick_request(const void *in)
{
	const struct fuse_in_header *h = in;

	return (h->opcode == FUSE_READ || h->opcode == FUSE_WRITE) &&
	       h->nodeid >= INO_DISK0;
}

int
fusefs_run(struct fusefs *fs)
{
	int rc;

	metrics_start(fs);
	/* Enough threads that a blocked request (a checkpoint waiting for
	 * in-flight reads) never starves the ones it waits for; few of
	 * them wait in the kernel (fs/fuse/fuse-loop.c).
	 */
	rc = fuse_loop_run(fs->se, 64, fuse_loop_default_active(),
			   quick_request);
	metrics_stop(fs);
	if (rc == -1) {
		log_error("FUSE session: %m");
		return -1;
	}
	return 0;
}

void
fusefs_set_protect(struct fusefs *fs, struct protect *pr)
{
	fs->protect = pr;
}

int
fusefs_protect(struct fusefs *fs, const char *uri, bool full, bool start)
{
	struct primary *p;
	size_t i;

	/* The switch drains the view's I/O; the sync's start (a connect,
	 * maybe slow) runs after, with the VM's I/O flowing again.
	 */
	pthread_rwlock_wrlock(&fs->role);
	p = protect_switch(fs->protect, uri, full);
	if (p) {
		for (i = 0; i < fs->ndisks; i++)
			fs->disks[i].pd =
				primary_find_disk(p, fs->disks[i].cd->name);
		fs->p = p;
	}
	pthread_rwlock_unlock(&fs->role);
	if (!p)
		return -1;
	log_info("protect %s: the disk files front the primary now", uri);
	if (start && primary_start(p) == -1) {
		log_warn("protect: start: %m");
		return -1;
	}
	return 0;
}

void
fusefs_unmount(struct fusefs *fs)
{
	if (fs->mounted) {
		fuse_session_unmount(fs->se);
		fs->mounted = false;
	}
}

void
fusefs_free(struct fusefs *fs)
{
	if (!fs)
		return;
	if (fs->se) {
		fusefs_unmount(fs);
		stop_handlers_remove(fs);
		if (fs->signals)
			fuse_remove_signal_handlers(fs->se);
		fuse_session_destroy(fs->se);
	}
	while (fs->snaps)
		snap_put(snap_take(fs, fs->snaps->fh));
	pthread_mutex_destroy(&fs->snap_lock);
	free(fs->all_parts);
	pthread_rwlock_destroy(&fs->role);
	pthread_cond_destroy(&fs->metrics_cond);
	pthread_mutex_destroy(&fs->metrics_lock);
	free(fs->disks);
	free(fs);
}
