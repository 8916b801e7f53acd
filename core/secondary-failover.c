/* SPDX-License-Identifier: MIT */
/* The secondary engine's failover: making it durable before it answers,
 * then the commit that writes the buffers into S while the VM runs on,
 * and its resumption after a crash (secondary.c's top comment,
 * "Durability", has the contract; secondary-internal.h the structures).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "errlog.h"
#include "crashpoint.h"
#include "extmap.h"
#include "fdio.h"
#include "journal.h"
#include "log.h"
#include "rangelock.h"
#include "secondary-internal.h"

/* ---- failover durability (see "Durability" at the top) ---- */

/* DIR/PREFIX.DISK.WHAT into out.  0, or -1 with ENAMETOOLONG. */
static int
durable_path(char *out, size_t len, const char *dir, struct secondary_disk *d,
	     const char *what)
{
	if (snprintf(out, len, "%s/%s.%s.%s", dir, d->r->prefix, d->name,
		     what) >= (int) len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* The journal's file name within jdir (journal.c adds the directory). */
static int
journal_name(char *out, size_t len, struct secondary_disk *d)
{
	if (snprintf(out, len, "%s.%s.journal", d->r->prefix, d->name) >=
	    (int) len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Both maps as journal records.  Caller holds the gate exclusively. */
static int
snapshot_maps(struct secondary_disk *d, struct journal_rec **out, size_t *n)
{
	size_t cap = extmap_count(d->active->map) +
		     extmap_count(d->hidden->map), i = 0;
	struct journal_rec *recs = malloc((cap ? cap : 1) * sizeof *recs);
	struct buffer *bufs[2] = { d->active, d->hidden };
	char ops[2] = { JOURNAL_ACTIVE, JOURNAL_HIDDEN };
	uint64_t pos, st, en;
	int k;

	if (recs == NULL)
		return -1;
	pthread_mutex_lock(&d->map_lock);
	for (k = 0; k < 2; k++)
		for (pos = 0; extmap_next(bufs[k]->map, pos, &st, &en);
		     pos = en)
			recs[i++] = (struct journal_rec) { ops[k], st, en - st };
	pthread_mutex_unlock(&d->map_lock);
	*out = recs;
	*n = i;
	return 0;
}

/* Copies b's mapped bytes into a new file store in bdir: for a memory
 * store, or a file the kernel cannot relink.  Nothing writes b's store
 * during failover (view writes go to S), so no lock is held for the copy.
 */
static struct store *
copy_to_file(struct secondary_disk *d, struct buffer *b, const char *what,
	     char *bounce)
{
	char tag[128];
	struct store *ns;
	uint64_t pos = 0, st, en, p, n;
	int more;

	snprintf(tag, sizeof tag, "colofs-%s-%s", d->name, what);
	ns = store_file_new(d->r->bdir, d->size, tag);
	if (ns == NULL)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&d->map_lock);
		more = extmap_next(b->map, pos, &st, &en);
		pthread_mutex_unlock(&d->map_lock);
		if (!more)
			break;
		for (p = st; p < en; p += n) {
			const void *src = store_read_run(b->store, p, en - p,
							 &bounce, COMMIT_CHUNK,
							 &n);

			if (src == NULL || ns->ops->pwrite(ns, src, n, p) == -1)
				goto err;
		}
		pos = en;
	}
	return ns;
err:
	{
		int saved = errno;
		store_free(ns);
		errno = saved;
	}
	return NULL;
}

/* Writes the journal's stamp (journal.h) after the disk's bytes of a file
 * store: the file is the disk's size plus JOURNAL_STAMP_LEN from now on.
 */
static int
stamp_store(struct secondary_disk *d, struct store *s, const char *what)
{
	unsigned char stamp[JOURNAL_STAMP_LEN];

	journal_stamp(d->journal, strcmp(what, "active") == 0 ?
		      JOURNAL_ACTIVE : JOURNAL_HIDDEN, stamp);
	if (full_pwrite(s->fd, stamp, sizeof stamp, d->size) == -1) {
		log_error("%s: stamp the %s buffer file: %m", d->name, what);
		return -1;
	}
	return 0;
}

/* Gives buffer b a durable name in bdir, stamped for d's journal. */
static int
persist_buffer(struct secondary_disk *d, struct buffer *b, const char *what,
	       char *bounce)
{
	struct secondary *r = d->r;
	struct store *ns, *old;
	char path[4096];

	if (durable_path(path, sizeof path, r->bdir, d, what) == -1)
		return -1;
	if (b->store->fd >= 0 && stamp_store(d, b->store, what) == -1)
		return -1;
	if (store_link(b->store, path) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -1;
	ns = copy_to_file(d, b, what, bounce);
	if (ns == NULL)
		return -1;
	if (stamp_store(d, ns, what) == -1 || store_link(ns, path) == -1) {
		int saved = errno;
		store_free(ns);
		errno = saved;
		return -1;
	}
	pthread_rwlock_wrlock(&r->gate);
	old = b->store;
	b->store = ns;
	pthread_rwlock_unlock(&r->gate);
	store_free(old);
	return 0;
}

/* Removes the durable files of every disk (after done, or a failed set-up,
 * or leftovers found at a restart in done or none).  Caller is the commit
 * thread or holds ctl_lock with no commit running.
 */
static void
drop_durable(struct secondary *r)
{
	char path[4096];
	const char *whats[] = { "hidden", "active" };
	int jfd = r->jdir ? fdio_dir_open(r->jdir) : -1;
	size_t i, k;

	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];
		struct journal *j;

		pthread_rwlock_wrlock(&r->gate);
		j = d->journal;
		d->journal = NULL;
		pthread_mutex_lock(&d->note_lock);
		d->notes_base += d->nnotes;
		d->nnotes = 0;
		pthread_mutex_unlock(&d->note_lock);
		pthread_rwlock_unlock(&r->gate);
		journal_close(j);
		if (jfd >= 0 && journal_name(path, sizeof path, d) == 0) {
			unlinkat(jfd, path, 0);
			fdio_sweep_tmp(jfd, path);
		}
		crash_point("dropped.journal");
		for (k = 0; r->bdir && k < 2; k++)
			if (durable_path(path, sizeof path, r->bdir, d,
					 whats[k]) == 0)
				unlink(path);
	}
	if (jfd >= 0)
		close(jfd);
}

/* Steps 1-3 of "Durability": 0 (the journals are durable), or -1 with
 * errno and the reason recorded (the durable files are removed again).
 */
static int
make_durable(struct secondary *r, char *bounce)
{
	struct journal_rec *recs;
	char name[4096];
	int jfd, saved;
	size_t i, n;

	jfd = fdio_dir_open(r->jdir);
	if (jfd == -1) {
		log_error("open directory %s: %m", r->jdir);
		goto err;
	}
	pthread_rwlock_wrlock(&r->gate);
	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];

		if (journal_name(name, sizeof name, d) == -1 ||
		    snapshot_maps(d, &recs, &n) == -1) {
			pthread_rwlock_unlock(&r->gate);
			goto err;
		}
		d->journal = journal_create(jfd, name, d->name, d->size,
					    r->generation, recs, n);
		free(recs);
		if (d->journal == NULL) {
			pthread_rwlock_unlock(&r->gate);
			goto err;
		}
	}
	pthread_rwlock_unlock(&r->gate);
	crash_point("failover_journal_written");
	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];

		if (persist_buffer(d, d->hidden, "hidden", bounce) == -1 ||
		    persist_buffer(d, d->active, "active", bounce) == -1)
			goto err;
	}
	crash_point("failover_buffers_linked");
	if (durable_sync_dir(r->bdir) == -1)
		goto err;
	crash_point("failover_buffers_synced");
	for (i = 0; i < r->ndisks; i++)
		if (journal_commit(r->disks[i]->journal) == -1)
			goto err;
	close(jfd);
	return 0;
err:
	saved = errno;
	secondary_record_error(r, "failover: making the buffers durable "
			     "failed: %s", strerror(saved));
	if (jfd >= 0)
		close(jfd);
	drop_durable(r);
	errno = saved;
	return -1;
}

bool
sec_journaled(struct secondary *r)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++)
		if (r->disks[i]->journal == NULL)
			return false;
	return r->ndisks > 0;
}

/* ---- failover commit ---- */

/* Copies [pos, end) of store s into S: from a memory store's pages
 * straight into S (lent to the kernel, pwrite_lent in image.h: the VM
 * wrote them from user space, and nothing may have read them through
 * the kernel since), else through *bounce (COMMIT_CHUNK bytes, allocated
 * on first use by store_read_run: a commit of memory buffers allocates
 * nothing, so it does not queue for the address space behind the spares'
 * unmapping, which the failover left to the reclaim thread).
 */
static int
commit_copy(struct secondary_disk *d, struct store *s, uint64_t pos,
	    uint64_t end, char **bounce)
{
	const struct image_ops *ops = d->img->ops;
	uint64_t run;

	for (; pos < end; pos += run) {
		const void *src = store_read_run(s, pos, end - pos, bounce,
						 COMMIT_CHUNK, &run);

		if (src == NULL)
			return -1;
		if (src != *bounce && ops->pwrite_lent != NULL ?
		    ops->pwrite_lent(d->img, src, run, pos) == -1 :
		    ops->pwrite(d->img, src, run, pos) == -1)
			return -1;
	}
	return 0;
}

/* Commits the buffered bytes of [off, end) into S. */
static int
commit_chunk(struct secondary_disk *d, uint64_t off, uint64_t end,
	     char **bounce)
{
	uint64_t pos, seg_end;

	for (pos = off; pos < end; pos = seg_end) {
		enum layer l = sec_view_source(d, pos, end, &seg_end);
		struct store *s;

		if (l == LAYER_IMAGE)
			continue;
		if (sec_tap_write(d, pos, seg_end - pos) == -1) {
			secondary_record_error(d->r, "%s: failover commit at %"
					     PRIu64 ": cannot mark it dirty: "
					     "%s", d->name, pos,
					     strerror(errno));
			return -1;
		}
		s = l == LAYER_ACTIVE ? d->active->store : d->hidden->store;
		if (commit_copy(d, s, pos, seg_end, bounce) == -1) {
			secondary_record_error(d->r, "%s: failover commit at %"
					     PRIu64 " failed: %s", d->name,
					     pos, strerror(errno));
			return -1;
		}
	}
	pthread_mutex_lock(&d->map_lock);
	if (sec_map_remove(d, d->active, off, end - off) == -1 ||
	    sec_map_remove(d, d->hidden, off, end - off) == -1) {
		pthread_mutex_unlock(&d->map_lock);
		secondary_record_error(d->r, "%s: failover commit: %s", d->name,
				     strerror(errno));
		return -1;
	}
	pthread_mutex_unlock(&d->map_lock);
	return 0;
}

/* The next buffered byte at or after pos: 1 and *start, or 0. */
static int
next_buffered(struct secondary_disk *d, uint64_t pos, uint64_t *start)
{
	uint64_t s1 = UINT64_MAX, s2 = UINT64_MAX, e;

	pthread_mutex_lock(&d->map_lock);
	if (!extmap_next(d->active->map, pos, &s1, &e))
		s1 = UINT64_MAX;
	if (!extmap_next(d->hidden->map, pos, &s2, &e))
		s2 = UINT64_MAX;
	pthread_mutex_unlock(&d->map_lock);
	*start = s1 < s2 ? s1 : s2;
	return *start != UINT64_MAX;
}

/* 0 committed, 1 cancelled, -1 failed. */
static int
commit_disk(struct secondary_disk *d, char **bounce)
{
	struct secondary *r = d->r;
	uint64_t pos = 0, start, end;
	struct rangelock_entry e;
	int ret;

	for (;;) {
		if (atomic_load(&r->commit_cancel))
			return 1;
		pthread_rwlock_rdlock(&r->gate);
		if (!next_buffered(d, pos, &start)) {
			pthread_rwlock_unlock(&r->gate);
			break;
		}
		end = start + COMMIT_CHUNK < d->size ? start + COMMIT_CHUNK
						     : d->size;
		rangelock_acquire(&d->rl, &e, start, end - start, true);
		ret = commit_chunk(d, start, end, bounce);
		rangelock_release(&d->rl, &e);
		pthread_rwlock_unlock(&r->gate);
		if (ret == -1)
			return -1;
		crash_point("commit_chunk");
		/* Start writing the chunk back now, so that the disk works
		 * while the next chunks are copied and the final flush has
		 * little left to wait for.  A hint: errors surface there.
		 * An image with write-behind does it already (its pwrite
		 * noted the chunk), from its own thread.
		 */
		if (d->img->fd >= 0 && d->img->wb == NULL)
			sync_file_range(d->img->fd, start, end - start,
					SYNC_FILE_RANGE_WRITE);
		pos = end;
	}
	if (d->img->ops->flush(d->img) == -1) {
		secondary_record_error(r, "%s: failover commit: flush: %s",
				     d->name, strerror(errno));
		return -1;
	}
	return 0;
}

static void *
commit_main(void *arg)
{
	struct secondary *r = arg;
	char *bounce = NULL;
	enum secondary_state next = SECONDARY_DONE;
	size_t i;
	int ret = 0;

	for (i = 0; ret == 0 && i < r->ndisks; i++)
		ret = commit_disk(r->disks[i], &bounce);
	free(bounce);
	/* The view writes' records too, before done: a crash before done is
	 * durable resumes the commit, which must not undo them.
	 */
	for (i = 0; ret == 0 && i < r->ndisks; i++) {
		pthread_rwlock_rdlock(&r->gate);
		ret = sec_notes_flush(r->disks[i]);
		pthread_rwlock_unlock(&r->gate);
	}
	if (ret == 0)
		crash_point("commit_flushed");
	/* done must be durable before a view write can reach S unjournaled. */
	if (ret == 0 && sec_call_hook(r, SECONDARY_DONE, false) == -1) {
		secondary_record_error(r, "failover: cannot record the state "
				     "done durably: %s; retry with failover",
				     strerror(errno));
		ret = -1;
	}

	pthread_rwlock_wrlock(&r->gate);
	if (ret == -1)
		next = SECONDARY_FAILOVER_FAILED;
	else if (ret == 1)
		next = SECONDARY_FAILOVER;	/* cancelled: left as it was */
	else
		sec_swap_buffers(r, NULL, NULL);
	r->state = next;
	pthread_rwlock_unlock(&r->gate);
	if (next == SECONDARY_DONE) {
		crash_point("done_before_drop");
		drop_durable(r);
		/* No checkpoint comes any more.  Not before the commit: their
		 * unmapping would take a CPU from it (and the address space's
		 * lock from anything it maps).
		 */
		sec_drop_spares(r, true);
	}
	else if (next == SECONDARY_FAILOVER_FAILED &&
		 sec_call_hook(r, SECONDARY_FAILOVER_FAILED, sec_journaled(r)) == -1)
		log_warn("failover failed and the state file was not "
			 "updated: %m");

	pthread_mutex_lock(&r->commit_lock);
	r->commit_running = false;
	pthread_cond_broadcast(&r->commit_cond);
	pthread_mutex_unlock(&r->commit_lock);
	return NULL;
}

/* Starts the commit thread (the state is FAILOVER).  0, or -1 with the
 * state FAILOVER_FAILED and the reason recorded (what: "failover" or
 * "resume").  Under ctl_lock.
 */
static int
commit_start(struct secondary *r, const char *what)
{
	int err;

	pthread_mutex_lock(&r->commit_lock);
	r->commit_running = true;
	pthread_mutex_unlock(&r->commit_lock);
	err = pthread_create(&r->commit_thread, NULL, commit_main, r);
	if (err != 0) {
		pthread_rwlock_wrlock(&r->gate);
		r->state = SECONDARY_FAILOVER_FAILED;
		pthread_rwlock_unlock(&r->gate);
		pthread_mutex_lock(&r->commit_lock);
		r->commit_running = false;
		pthread_mutex_unlock(&r->commit_lock);
		return sec_refuse(r, err, "%s: cannot start the commit: %s", what,
			      strerror(err));
	}
	r->commit_joinable = true;
	return 0;
}

/* Joins a finished or cancelled commit thread.  Caller holds ctl_lock. */
void
sec_join_commit(struct secondary *r)
{
	if (r->commit_joinable) {
		pthread_join(r->commit_thread, NULL);
		r->commit_joinable = false;
	}
}

/* Makes the failover durable before it is acknowledged: the journals and
 * buffer files (if the secondary has a buffer_dir), then the state file says
 * failover (the hook).  0, or -1 with errno and the reason recorded.
 * Under ctl_lock, the state FAILOVER with failover_pending.
 */
static int
failover_durable(struct secondary *r)
{
	char *bounce;
	int ret = 0;

	if (r->jdir && r->bdir && !sec_journaled(r)) {
		bounce = malloc(COMMIT_CHUNK);
		if (bounce == NULL)
			return -1;
		ret = make_durable(r, bounce);
		free(bounce);
		if (ret == -1)
			return -1;
	}
	crash_point("failover_journaled");
	if (sec_call_hook(r, SECONDARY_FAILOVER, sec_journaled(r)) == -1) {
		int saved = errno;

		secondary_record_error(r, "failover: the state file was not "
				     "updated: %s", strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

int
secondary_failover(struct secondary *r)
{
	enum secondary_state prev;
	int ret = 0, err;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case SECONDARY_NONE:
		ret = sec_refuse(r, EINVAL, "failover: replication is not running");
		goto out;
	case SECONDARY_RUNNING:
	case SECONDARY_FAILOVER_FAILED:
		break;
	default:
		ret = sec_refuse_promoted(r, "failover");
		goto out;
	}
	sec_join_commit(r);
	prev = r->state;
	/* From here on I/O acts as in failover (primary writes refused, view
	 * writes into S and journaled), but the status still shows prev:
	 * failover is announced only once it is durable.
	 */
	pthread_rwlock_wrlock(&r->gate);
	r->state = SECONDARY_FAILOVER;
	r->shown = prev;
	pthread_mutex_lock(&r->commit_lock);
	r->failover_pending = true;
	pthread_mutex_unlock(&r->commit_lock);
	pthread_rwlock_unlock(&r->gate);
	/* A new failover: what came before it is over (a failed commit
	 * that this one retries records its error again if it fails).
	 */
	secondary_clear_error(r);
	ret = failover_durable(r);
	pthread_rwlock_wrlock(&r->gate);
	pthread_mutex_lock(&r->commit_lock);
	r->failover_pending = false;
	pthread_cond_broadcast(&r->pending_cond);
	pthread_mutex_unlock(&r->commit_lock);
	if (ret == -1)
		r->state = SECONDARY_FAILOVER_FAILED;
	pthread_rwlock_unlock(&r->gate);
	if (ret == -1) {
		err = errno;
		if (sec_call_hook(r, SECONDARY_FAILOVER_FAILED, sec_journaled(r)) == -1)
			log_warn("failover failed and the state file was not "
				 "updated: %m");
		ret = sec_refuse(r, EIO, "failover: not durable, so not done: %s; "
			     "retry with failover", strerror(err));
		goto out;
	}
	crash_point("failover_acked");
	ret = commit_start(r, "failover");
out:
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_restore_done(struct secondary *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE) {
		ret = sec_refuse(r, EBUSY, "restore: not in state none");
	} else {
		pthread_rwlock_wrlock(&r->gate);
		r->state = SECONDARY_DONE;
		pthread_rwlock_unlock(&r->gate);
		/* A kill after done was recorded may have left them. */
		drop_durable(r);
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

void
secondary_drop_leftovers(struct secondary *r)
{
	pthread_mutex_lock(&r->ctl_lock);
	if (r->state == SECONDARY_NONE && r->jdir != NULL)
		drop_durable(r);
	pthread_mutex_unlock(&r->ctl_lock);
}

struct replay {
	struct secondary_disk *d;
	struct buffer *hidden, *active;
};

static int
replay_rec(void *opaque, const struct journal_rec *rec)
{
	struct replay *rp = opaque;
	struct secondary_disk *d = rp->d;
	int ret;

	pthread_mutex_lock(&d->map_lock);
	switch (rec->op) {
	case JOURNAL_ACTIVE:
		ret = sec_map_insert(d, rp->active, rec->off, rec->len);
		break;
	case JOURNAL_HIDDEN:
		ret = sec_map_insert(d, rp->hidden, rec->off, rec->len);
		break;
	default:
		ret = sec_map_remove(d, rp->active, rec->off, rec->len);
		if (ret == 0)
			ret = sec_map_remove(d, rp->hidden, rec->off, rec->len);
		break;
	}
	pthread_mutex_unlock(&d->map_lock);
	return ret;
}

/* A buffer over the durable file DIR/PREFIX.DISK.WHAT, which must be a
 * regular file of exactly the disk's size plus the stamp (store_file_open
 * would size it silently) and carry the stamp of info's journal for this
 * buffer.  NULL with errno, and what is wrong in err.
 */
static struct buffer *
buffer_open(struct secondary_disk *d, const char *what,
	    const struct journal_info *info, char *err, size_t errlen)
{
	unsigned char stamp[JOURNAL_STAMP_LEN];
	char path[4096], why[256];
	struct buffer *b;
	struct stat st;
	int fd, dirfd;

	if (durable_path(path, sizeof path, d->r->bdir, d, what) == -1) {
		snprintf(err, errlen, "%s buffer file: %s", what,
			 strerror(errno));
		return NULL;
	}
	/* Not by path: no link followed, and only a file colofs owns. */
	dirfd = fdio_dir_open(d->r->bdir);
	fd = dirfd == -1 ? -1 : fdio_open_file_at(dirfd, strrchr(path, '/') + 1,
						  O_RDONLY);
	if (fd == -1) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %s", path,
			 saved == EINVAL ? "not a regular file"
					 : strerror(saved));
		if (dirfd >= 0)
			close(dirfd);
		errno = saved;
		return NULL;
	}
	close(dirfd);
	if (fdio_check_own(fd, why, sizeof why) == -1 || fstat(fd, &st) == -1) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %.300s", path,
			 saved == EPERM ? why : strerror(saved));
		close(fd);
		errno = saved;
		return NULL;
	}
	if ((uint64_t) st.st_size != d->size + JOURNAL_STAMP_LEN) {
		snprintf(err, errlen, "buffer file %.600s: %jd bytes, the "
			 "journal needs the disk's size and a stamp, %" PRIu64,
			 path, (intmax_t) st.st_size,
			 d->size + JOURNAL_STAMP_LEN);
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	if (full_pread(fd, stamp, sizeof stamp, d->size) == -1) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %s", path,
			 strerror(saved));
		close(fd);
		errno = saved;
		return NULL;
	}
	close(fd);
	if (journal_stamp_check(info, strcmp(what, "active") == 0 ?
				JOURNAL_ACTIVE : JOURNAL_HIDDEN, stamp, why,
				sizeof why) == -1) {
		snprintf(err, errlen, "buffer file %.600s: %.300s", path, why);
		errno = EINVAL;
		return NULL;
	}
	b = calloc(1, sizeof *b);
	/* The store's size covers the stamp, so that opening it keeps it. */
	if (b == NULL || (b->map = extmap_new()) == NULL ||
	    (b->zeros = extmap_new()) == NULL ||
	    (b->store = store_file_open(path, d->size +
					JOURNAL_STAMP_LEN)) == NULL) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %s", path,
			 strerror(saved));
		sec_buffer_free(b);
		errno = saved;
		return NULL;
	}
	return b;
}

/* Reads, checks and replays disk d's journal and opens its buffer files
 * into rp.  0, or -1 with errno and what is wrong (naming the file) in
 * err.  Nothing is written anywhere but the journal's torn tail.
 */
static int
resume_disk(struct secondary_disk *d, int jfd, struct replay *rp, char *err,
	    size_t errlen)
{
	struct journal_info info;
	char name[4096], why[512];
	size_t i;

	rp->d = d;
	if (journal_name(name, sizeof name, d) == -1) {
		snprintf(err, errlen, "journal of %s: %s", d->name,
			 strerror(errno));
		return -1;
	}
	if (journal_load(jfd, name, d->name, d->size, &info, &d->journal, why,
			 sizeof why) == -1) {
		int saved = errno;

		snprintf(err, errlen, "journal %.300s/%.300s: %.400s", d->r->jdir, name,
			 why);
		errno = saved;
		return -1;
	}
	if (info.torn)
		log_warn("journal %.300s/%.300s: a torn last record was ignored",
			 d->r->jdir, name);
	rp->hidden = buffer_open(d, "hidden", &info, err, errlen);
	rp->active = rp->hidden ? buffer_open(d, "active", &info, err, errlen)
				: NULL;
	if (rp->active == NULL)
		goto fail;
	for (i = 0; i < info.nrecs; i++) {
		if (replay_rec(rp, &info.recs[i]) == -1) {
			snprintf(err, errlen, "journal %.300s/%.300s: replay: %s",
				 d->r->jdir, name, strerror(errno));
			goto fail;
		}
	}
	journal_info_release(&info);
	return 0;
fail:
	{
		int saved = errno;

		journal_info_release(&info);
		errno = saved;
	}
	return -1;
}

/* Loads the buffers and journals a failover (or a handover) left in the
 * durable directories and installs them with the state next.  Caller
 * holds ctl_lock; the state is none.  0, or -1 with errno, what is wrong
 * in err, and nothing installed.
 */
static int
load_durable(struct secondary *r, enum secondary_state next, char *err,
	     size_t errlen)
{
	struct replay *rp = NULL;
	size_t i, k;
	int saved, jfd = -1;

	rp = calloc(r->ndisks, sizeof *rp);
	jfd = fdio_dir_open(r->jdir);
	if (rp == NULL || jfd == -1) {
		snprintf(err, errlen, "%s: %s", r->jdir, strerror(errno));
		goto fail;
	}
	/* Every disk is checked before any commit writes S. */
	for (i = 0; i < r->ndisks; i++)
		if (resume_disk(r->disks[i], jfd, &rp[i], err, errlen) == -1)
			goto fail;
	close(jfd);
	pthread_rwlock_wrlock(&r->gate);
	for (i = 0; i < r->ndisks; i++) {
		r->disks[i]->hidden = rp[i].hidden;
		r->disks[i]->active = rp[i].active;
	}
	r->state = next;
	pthread_rwlock_unlock(&r->gate);
	free(rp);
	return 0;
fail:
	saved = errno ? errno : EINVAL;
	if (jfd >= 0)
		close(jfd);
	for (i = 0; i < r->ndisks; i++) {
		if (rp) {
			for (k = 0; k < 2; k++) {
				struct buffer *b = k ? rp[i].active
						     : rp[i].hidden;
				if (b)
					sec_account(r, -(int64_t) sec_occupied(b));
				sec_buffer_free(b);
			}
		}
		journal_close(r->disks[i]->journal);
		r->disks[i]->journal = NULL;
	}
	free(rp);
	errno = saved;
	return -1;
}

int
secondary_resume_failover(struct secondary *r)
{
	char err[1024] = "";
	int ret;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE || r->jdir == NULL || r->bdir == NULL ||
	    r->ndisks == 0)
		ret = sec_refuse(r, EINVAL, "resume: nothing to resume from");
	else if (load_durable(r, SECONDARY_FAILOVER, err, sizeof err) == -1)
		ret = sec_refuse(r, errno, "resume: the interrupted failover "
			     "cannot be finished: %s; nothing was written to "
			     "S (see colofs(8), \"A damaged failover "
			     "journal\")", err);
	else
		ret = commit_start(r, "resume");
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_handover(struct secondary *r)
{
	char *bounce = NULL;
	size_t i;
	int ret = -1;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_RUNNING || r->jdir == NULL ||
	    r->bdir == NULL) {
		ret = sec_refuse(r, EINVAL, "handover: only in running, with a "
			     "buffer_dir");
		goto out;
	}
	bounce = malloc(COMMIT_CHUNK);
	if (bounce == NULL || make_durable(r, bounce) == -1)
		goto out;
	/* The files stay; the next process replays them. */
	for (i = 0; i < r->ndisks; i++) {
		struct journal *j;

		pthread_rwlock_wrlock(&r->gate);
		j = r->disks[i]->journal;
		r->disks[i]->journal = NULL;
		pthread_rwlock_unlock(&r->gate);
		journal_close(j);
	}
	ret = 0;
out:
	free(bounce);
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_resume_running(struct secondary *r)
{
	char err[1024] = "";
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE || r->jdir == NULL || r->bdir == NULL ||
	    r->ndisks == 0)
		ret = sec_refuse(r, EINVAL, "resume: nothing to resume from");
	else if (load_durable(r, SECONDARY_RUNNING, err, sizeof err) == -1)
		ret = sec_refuse(r, errno, "resume: the buffers handed over by "
			     "the last process cannot be read: %s", err);
	else
		drop_durable(r);	/* open: the names can go */
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

void
secondary_wait_commit(struct secondary *r)
{
	/* A failover being made durable holds ctl_lock until its commit
	 * thread runs (or it failed): wait for that first.
	 */
	pthread_mutex_lock(&r->ctl_lock);
	pthread_mutex_unlock(&r->ctl_lock);
	pthread_mutex_lock(&r->commit_lock);
	while (r->commit_running)
		pthread_cond_wait(&r->commit_cond, &r->commit_lock);
	pthread_mutex_unlock(&r->commit_lock);
}
