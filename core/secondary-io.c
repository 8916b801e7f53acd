/* SPDX-License-Identifier: MIT */
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
/* The secondary engine's I/O: the layers (which of active, hidden and S
 * holds a byte of V), the primary's writes over NBD (old S saved in
 * hidden first) and the VM's view reads and writes, in every state
 * (secondary.c's top comment has the rules; secondary-internal.h the
 * structures and the locks' order).
 */


/* ---- layers ---- */

/* Where V's bytes at pos come from, and up to where (at most end). */
enum layer
sec_view_source(struct secondary_disk *d, uint64_t pos, uint64_t end,
	    uint64_t *seg_end)
{
	uint64_t s, e, limit = end;
	enum layer l = LAYER_IMAGE;

	pthread_mutex_lock(&d->map_lock);
	if (d->active && extmap_next(d->active->map, pos, &s, &e) &&
	    s < end) {
		if (s == pos) {
			l = LAYER_ACTIVE;
			limit = e;
			goto out;
		}
		limit = s;
	}
	if (d->hidden && extmap_next(d->hidden->map, pos, &s, &e) &&
	    s < limit) {
		if (s == pos) {
			l = LAYER_HIDDEN;
			if (e < limit)
				limit = e;
		} else
			limit = s;
	}
out:
	pthread_mutex_unlock(&d->map_lock);
	*seg_end = limit < end ? limit : end;
	return l;
}

/* The buffer store behind a layer; NULL for the image. */
static struct store *
layer_store(struct secondary_disk *d, enum layer l)
{
	switch (l) {
	case LAYER_ACTIVE:
		return d->active->store;
	case LAYER_HIDDEN:
		return d->hidden->store;
	default:
		return NULL;
	}
}

static int
check_io(struct secondary_disk *d, size_t len, uint64_t off)
{
	if (off > d->size || len > d->size - off) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Writes buf into S, or zeroes the range when buf is NULL: punch says
 * whether a hole may be punched there (image.h).
 */
static int
image_write(struct secondary_disk *d, const void *buf, size_t len,
	    uint64_t off, bool punch)
{
	if (buf == NULL)
		return d->img->ops->zero(d->img, off, len, punch);
	return d->img->ops->pwrite(d->img, buf, len, off);
}

/* Writes (or zeroes, when buf is NULL) into a buffer and maps the range. */
static int
buffer_write(struct secondary_disk *d, struct buffer *b, const void *buf,
	     size_t len, uint64_t off)
{
	int ret, tries;

	/* A full file system may be full of buffers that a checkpoint
	 * dropped and the reclaim thread has not freed yet, or of the spares'
	 * retained blocks: free them, and try again, rather than fail for
	 * space already released.
	 */
	for (tries = 0; tries < 2; tries++) {
		if (buf == NULL)
			ret = b->store->ops->zero(b->store, off, len);
		else
			ret = b->store->ops->pwrite(b->store, buf, len, off);
		if (ret == 0 || errno != ENOSPC ||
		    !(sec_reclaim_drain(d->r) | sec_drop_spares(d->r, false)))
			break;
	}
	if (ret == -1)
		return -1;
	pthread_mutex_lock(&d->map_lock);
	ret = buf ? sec_map_insert(d, b, off, len) : sec_map_insert_zero(d, b, off, len);
	pthread_mutex_unlock(&d->map_lock);
	return ret;
}

/* Copies [off, off+len) from S into hidden.  0, or -1 with errno.  A
 * memory buffer is read into directly; others go through a bounce buffer.
 */
static int
save_range(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	struct buffer *h = d->hidden;
	size_t n = len < BOUNCE_MAX ? len : BOUNCE_MAX;
	char *bounce;
	uint64_t pos;
	int ret = -1;

	if (h->store->direct) {
		uint64_t run;

		/* Straight into the pool's pages (the store faults fresh ones
		 * in with one call per run, not one trap per page: a third of
		 * an ingest's CPU went to those traps, doc/performance.md).
		 */
		for (pos = off; pos < off + len; pos += run) {
			char *dst = store_write_ptr(h->store, pos,
						    off + len - pos, &run);

			if (dst == NULL ||
			    d->img->ops->pread(d->img, dst, run, pos) == -1)
				return -1;
		}
		pthread_mutex_lock(&d->map_lock);
		ret = sec_map_insert(d, h, off, len);
		pthread_mutex_unlock(&d->map_lock);
		return ret;
	}
	bounce = malloc(n);
	if (bounce == NULL)
		return -1;
	for (pos = off; pos < off + len; pos += n) {
		if (off + len - pos < n)
			n = off + len - pos;
		if (d->img->ops->pread(d->img, bounce, n, pos) == -1)
			goto out;
		if (buffer_write(d, d->hidden, bounce, n, pos) == -1)
			goto out;
	}
	ret = 0;
out:
	{
		int saved = errno;
		free(bounce);
		errno = saved;
	}
	return ret;
}

/* Bytes of [off, end) that neither buffer holds: what a save adds. */
static uint64_t
unsaved_bytes(struct secondary_disk *d, uint64_t off, uint64_t end)
{
	uint64_t pos, seg_end, n = 0;

	for (pos = off; pos < end; pos = seg_end)
		if (sec_view_source(d, pos, end, &seg_end) == LAYER_IMAGE)
			n += seg_end - pos;
	return n;
}

/* Saves every part of [off, end) that neither buffer holds. */
static int
save_old(struct secondary_disk *d, uint64_t off, uint64_t end)
{
	uint64_t pos = off, seg_end;

	while (pos < end) {
		enum layer l = sec_view_source(d, pos, end, &seg_end);

		if (l == LAYER_IMAGE && save_range(d, pos, seg_end - pos) == -1)
			return -1;
		pos = seg_end;
	}
	return 0;
}

/* Records why write_begin refused a write (errno kept). */
static void
refuse_io(struct secondary_disk *d, const char *what, size_t len, uint64_t off)
{
	if (errno == EINVAL)
		secondary_record_error(d->r, "%s: %s at %" PRIu64 "+%zu refused: "
				     "beyond the end of the disk (%" PRIu64
				     " bytes)", d->name, what, off, len,
				     d->size);
	else
		secondary_record_error(d->r, "%s: %s at %" PRIu64 "+%zu refused "
				     "in state %s", d->name, what, off, len,
				     secondary_state_name(secondary_state(d->r)));
}

/* Tells the tap that S takes bytes that are not the primary's. */
int
sec_tap_write(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	struct secondary *r = d->r;

	return r->tap.write ? r->tap.write(r->tap.opaque, d->index, off, len) :
	       0;
}

/* Begins a write of [off, off+len): checks the range, takes the gate
 * shared and then the range lock exclusively.  0: begun (end it with
 * io_end); 1: nothing to do (len 0); -1: refused, with errno = err when
 * the state is not in the accepted set, EINVAL beyond the end.
 */
static int
write_begin(struct secondary_disk *d, struct rangelock_entry *e, size_t len,
	    uint64_t off, unsigned accepted, int err)
{
	if (check_io(d, len, off) == -1)
		return -1;
	pthread_rwlock_rdlock(&d->r->gate);
	if (!(accepted & STATE_BIT(d->r->state))) {
		pthread_rwlock_unlock(&d->r->gate);
		errno = err;
		return -1;
	}
	if (len == 0) {
		pthread_rwlock_unlock(&d->r->gate);
		return 1;
	}
	rangelock_acquire(&d->rl, e, off, len, true);
	return 0;
}

/* Ends an I/O begun under the gate and the range lock: returns what it
 * reserved under the limit and lets go of both, keeping errno.
 */
static void
io_end(struct secondary_disk *d, struct rangelock_entry *e, uint64_t reserved)
{
	int saved = errno;

	if (reserved)
		sec_unreserve(d->r, reserved);
	rangelock_release(&d->rl, e);
	pthread_rwlock_unlock(&d->r->gate);
	errno = saved;
}

/* ---- primary I/O ---- */

int
secondary_primary_read(struct secondary_disk *d, void *buf, size_t len,
		     uint64_t off)
{
	struct rangelock_entry e;
	int ret;

	if (check_io(d, len, off) == -1)
		return -1;
	if (len == 0)
		return 0;
	rangelock_acquire(&d->rl, &e, off, len, false);
	ret = d->img->ops->pread(d->img, buf, len, off);
	rangelock_release(&d->rl, &e);
	return ret;
}

int
secondary_primary_write(struct secondary_disk *d, const void *buf, size_t len,
		      uint64_t off)
{
	struct secondary *r = d->r;
	struct rangelock_entry e;
	uint64_t need = 0;
	int ret;

	ret = write_begin(d, &e, len, off, STATE_BIT(SECONDARY_NONE) |
			  STATE_BIT(SECONDARY_RUNNING), ESHUTDOWN);
	if (ret != 0) {
		if (ret == -1)
			refuse_io(d, "primary write", len, off);
		return ret == 1 ? 0 : -1;
	}
	ret = -1;
	if (r->state == SECONDARY_RUNNING) {
		if (sec_limited(r)) {
			need = unsaved_bytes(d, off, off + len);
			if (sec_reserve(d, need, "primary write") == -1) {
				need = 0;
				goto out;
			}
		}
		if (save_old(d, off, off + len) == -1) {
			secondary_record_error(r, "%s: saving old data at %"
					     PRIu64 "+%zu into hidden failed, "
					     "primary write refused: %s",
					     d->name, off, len, strerror(errno));
			goto out;
		}
	}
	/* A primary's zero is WRITE_ZEROES without NO_HOLE, or a trim. */
	if (image_write(d, buf, len, off, true) == -1) {
		secondary_record_error(r, "%s: primary write at %" PRIu64
				     "+%zu failed on the secondary disk: %s",
				     d->name, off, len, strerror(errno));
		goto out;
	}
	atomic_fetch_add(&d->primary_write_bytes, len);
	ret = 0;
out:
	io_end(d, &e, need);
	return ret;
}

/* Zeroing is a write with no buffer; its length must fit a size_t. */
static int
zero_by(int (*write)(struct secondary_disk *, const void *, size_t, uint64_t),
	struct secondary_disk *d, uint64_t off, uint64_t len)
{
	if (len > SIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	return write(d, NULL, len, off);
}

int
secondary_primary_zero(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	return zero_by(secondary_primary_write, d, off, len);
}

int
secondary_primary_flush(struct secondary_disk *d)
{
	return d->img->ops->flush(d->img);
}

/* ---- view I/O ---- */

int
secondary_view_read(struct secondary_disk *d, void *buf, size_t len,
		  uint64_t off)
{
	struct secondary *r = d->r;
	struct rangelock_entry e;
	uint64_t pos, end = off + len, seg_end;
	int ret = -1;

	if (check_io(d, len, off) == -1)
		return -1;
	if (len == 0)
		return 0;
	pthread_rwlock_rdlock(&r->gate);
	rangelock_acquire(&d->rl, &e, off, len, false);
	for (pos = off; pos < end; pos = seg_end) {
		char *p = (char *) buf + (pos - off);
		struct store *s = layer_store(d, sec_view_source(d, pos, end,
							     &seg_end));

		if (s == NULL) {
			if (d->img->ops->pread(d->img, p, seg_end - pos,
					       pos) == -1)
				goto out;
		} else if (s->ops->pread(s, p, seg_end - pos, pos) == -1)
			goto out;
	}
	ret = 0;
	atomic_fetch_add(&d->view_reads, 1);
	atomic_fetch_add(&d->view_read_bytes, len);
out:
	io_end(d, &e, 0);
	return ret;
}

_Static_assert(sizeof(struct rangelock_entry) <=
	       sizeof(((struct secondary_read *) 0)->space),
	       "struct replica_read too small for a range lock entry");

int
secondary_view_read_begin(struct secondary_disk *d, uint64_t off, size_t len,
			struct secondary_read *rd, struct secondary_seg *seg)
{
	struct secondary *r = d->r;
	struct rangelock_entry *e = (struct rangelock_entry *) rd->space;
	uint64_t seg_end;
	struct store *s;

	if (check_io(d, len, off) == -1)
		return -1;
	if (len == 0) {
		errno = EAGAIN;
		return -1;
	}
	pthread_rwlock_rdlock(&r->gate);
	rangelock_acquire(&d->rl, e, off, len, false);
	s = layer_store(d, sec_view_source(d, off, off + len, &seg_end));
	if (seg_end < off + len)
		goto again;
	if (s == NULL) {
		if (d->img->fd < 0)
			goto again;
		*seg = (struct secondary_seg) { d->img->fd, off, NULL };
	} else if (s->direct) {
		uint64_t run;
		const void *p = store_read_ptr(s, off, len, &run);

		/* Pages not in a row (or never written): the caller copies. */
		if (p == NULL || run < len)
			goto again;
		*seg = (struct secondary_seg) { -1, 0, p };
	} else if (s->fd >= 0)
		*seg = (struct secondary_seg) { s->fd, off, NULL };
	else
		goto again;
	atomic_fetch_add(&d->view_reads, 1);
	atomic_fetch_add(&d->view_read_bytes, len);
	rd->d = d;
	rd->lock = e;
	return 0;
again:
	io_end(d, e, 0);
	errno = EAGAIN;
	return -1;
}

void
secondary_view_read_end(struct secondary_read *rd)
{
	io_end(rd->d, rd->lock, 0);
}

/* Makes the view writes noted so far durable, then their records: S and
 * the active buffer are synced first, so that a record never reaches the
 * disk before its data (a durable D without its S data would let a
 * resumed commit drop buffered data the VM had flushed; an A without its
 * buffer data would commit stale bytes).  Notes added meanwhile, and any
 * whose append failed, wait for the next call.  Caller holds the gate (the
 * journal stays).  0, or -1.
 */
int
sec_notes_flush(struct secondary_disk *d)
{
	uint64_t upto;
	size_t i, k;
	int ret = 0;

	pthread_mutex_lock(&d->note_lock);
	upto = d->notes_base + d->nnotes;
	pthread_mutex_unlock(&d->note_lock);
	if (d->img->ops->flush(d->img) == -1)
		return -1;
	if (d->journal == NULL)
		return 0;
	if (d->active && store_sync(d->active->store) == -1)
		return -1;
	crash_point("notes_data_synced");
	pthread_mutex_lock(&d->note_lock);
	k = upto > d->notes_base ? (size_t) (upto - d->notes_base) : 0;
	for (i = 0; i < k; i++)
		if (journal_append(d->journal, d->notes[i].op, d->notes[i].off,
				   d->notes[i].len) == -1) {
			ret = -1;
			break;
		}
	/* Only the appended notes leave.  One that did not make it stays,
	 * with those after it: their writers may be waiting in their own
	 * notes_flush, which must fail (or append them) rather than find
	 * nothing left to append and return 0.
	 */
	if (d->nnotes > i)
		memmove(d->notes, d->notes + i,
			(d->nnotes - i) * sizeof *d->notes);
	d->nnotes -= i;
	d->notes_base += i;
	pthread_mutex_unlock(&d->note_lock);
	if (ret == 0)
		ret = journal_sync(d->journal);
	if (ret == -1)
		secondary_record_error(d->r, "%s: the failover journal: %s",
				     d->name, strerror(errno));
	return ret;
}

/* After a view write during failover changed S or active: the record
 * that keeps a resumed commit from undoing it, appended by notes_flush
 * before the write returns: its data synced first (a power cut leaves no
 * record without its data), the record then in the journal (a kill -9,
 * which the holder's VM survives, loses no write the VM saw complete).
 * The cost, an fdatasync of S or active and one of the journal per view
 * write, is paid only during a failover commit.  Caller holds the gate
 * and the range lock, so records of overlapping writes keep their order.
 * 0, or -1 (recorded).
 */
static int
journal_note(struct secondary_disk *d, char op, uint64_t off, uint64_t len)
{
	struct journal_rec *n;

	if (d->journal == NULL)
		return 0;
	pthread_mutex_lock(&d->note_lock);
	if (d->nnotes == d->notes_cap) {
		size_t cap = d->notes_cap ? 2 * d->notes_cap : 64;

		n = realloc(d->notes, cap * sizeof *n);
		if (n == NULL) {
			pthread_mutex_unlock(&d->note_lock);
			secondary_record_error(d->r, "%s: view write at %" PRIu64
					     " refused: no memory", d->name,
					     off);
			errno = EIO;
			return -1;
		}
		d->notes = n;
		d->notes_cap = cap;
	}
	d->notes[d->nnotes++] = (struct journal_rec) { op, off, len };
	pthread_mutex_unlock(&d->note_lock);
	if (sec_notes_flush(d) == -1) {
		errno = EIO;
		return -1;
	}
	return 0;
}

/* In FAILOVER_FAILED: buffered parts go to active, the rest to S. */
static int
write_failed_state(struct secondary_disk *d, const void *buf, size_t len,
		   uint64_t off, bool punch)
{
	uint64_t pos, end = off + len, seg_end;

	for (pos = off; pos < end; pos = seg_end) {
		const void *p = buf ? (const char *) buf + (pos - off) : NULL;
		enum layer l = sec_view_source(d, pos, end, &seg_end);
		int ret;

		if (l == LAYER_IMAGE)
			ret = image_write(d, p, seg_end - pos, pos,
					  punch) == -1 ? -1 :
			      journal_note(d, JOURNAL_DROP, pos, seg_end - pos);
		else
			ret = buffer_write(d, d->active, p, seg_end - pos,
					   pos) == -1 ? -1 :
			      journal_note(d, JOURNAL_ACTIVE, pos, seg_end - pos);
		if (ret == -1)
			return -1;
	}
	return 0;
}

void (*secondary_failover_wait_hook)(struct secondary *r);

/* Waits while a failover is being made durable: a view write must not
 * reach S before the state file says failover (a crash would restart in
 * none with the VM's write mixed into S).  Without the gate held: the
 * failover takes it exclusively meanwhile.
 */
static void
wait_failover_durable(struct secondary *r)
{
	pthread_mutex_lock(&r->commit_lock);
	while (r->failover_pending) {
		if (secondary_failover_wait_hook)
			secondary_failover_wait_hook(r);
		pthread_cond_wait(&r->pending_cond, &r->commit_lock);
	}
	pthread_mutex_unlock(&r->commit_lock);
}

/* A view write of buf, or when buf is NULL a zeroing (punch: a hole may
 * be punched where it reaches S).
 */
static int
view_write(struct secondary_disk *d, const void *buf, size_t len, uint64_t off,
	   bool punch)
{
	struct secondary *r = d->r;
	struct rangelock_entry e;
	uint64_t need = 0;
	bool recorded = false;
	int ret;

	/* The secondary VM must not write before start: EIO.  A failover
	 * that began after the wait: wait again, gate released.
	 */
	for (;;) {
		wait_failover_durable(r);
		ret = write_begin(d, &e, len, off, ~STATE_BIT(SECONDARY_NONE),
				  EIO);
		if (ret != 0) {
			if (ret == -1)
				refuse_io(d, "view write", len, off);
			return ret == 1 ? 0 : -1;
		}
		if (!r->failover_pending)
			break;
		io_end(d, &e, 0);
	}
	ret = -1;
	if (r->state != SECONDARY_RUNNING && sec_tap_write(d, off, len) == -1) {
		secondary_record_error(r, "%s: view write at %" PRIu64 "+%zu: "
				     "cannot mark it dirty: %s", d->name, off,
				     len, strerror(errno));
		io_end(d, &e, 0);
		return -1;
	}
	switch (r->state) {
	case SECONDARY_RUNNING:
		/* Zeroing takes no space; data takes what active does not
		 * hold as data already.
		 */
		if (sec_limited(r) && buf != NULL) {
			pthread_mutex_lock(&d->map_lock);
			need = len - extmap_bytes_in(d->active->map, off, len) +
			       extmap_bytes_in(d->active->zeros, off, len);
			pthread_mutex_unlock(&d->map_lock);
			if (sec_reserve(d, need, "view write") == -1) {
				need = 0;
				recorded = true;
				break;
			}
		}
		ret = buffer_write(d, d->active, buf, len, off);
		break;
	case SECONDARY_FAILOVER:
		/* The buffered copy becomes obsolete: drop it after S has the
		 * new data, so the commit cannot write it over the new data.
		 */
		ret = image_write(d, buf, len, off, punch);
		if (ret == 0)
			crash_point("failover_view_write");	/* S, no D */
		if (ret == 0)
			ret = journal_note(d, JOURNAL_DROP, off, len);
		if (ret == 0) {
			pthread_mutex_lock(&d->map_lock);
			ret = sec_map_remove(d, d->active, off, len);
			if (ret == 0)
				ret = sec_map_remove(d, d->hidden, off, len);
			pthread_mutex_unlock(&d->map_lock);
		}
		break;
	case SECONDARY_FAILOVER_FAILED:
		ret = write_failed_state(d, buf, len, off, punch);
		break;
	default:
		ret = image_write(d, buf, len, off, punch);
		break;
	}
	if (ret == 0) {
		atomic_fetch_add(&d->view_write_bytes, len);
		atomic_fetch_add(&d->view_writes, 1);
	} else if (!recorded)
		secondary_record_error(r, "%s: view write at %" PRIu64 "+%zu "
				     "failed: %s", d->name, off, len,
				     strerror(errno));
	io_end(d, &e, need);
	return ret;
}

int
secondary_view_write(struct secondary_disk *d, const void *buf, size_t len,
		   uint64_t off)
{
	return view_write(d, buf, len, off, false);
}

static int
view_zero(struct secondary_disk *d, uint64_t off, uint64_t len, bool punch)
{
	if (len > SIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	return view_write(d, NULL, (size_t) len, off, punch);
}

int
secondary_view_zero(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	return view_zero(d, off, len, false);
}

int
secondary_view_punch(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	return view_zero(d, off, len, true);
}

int
secondary_view_flush(struct secondary_disk *d)
{
	struct secondary *r = d->r;
	int ret;

	pthread_rwlock_rdlock(&r->gate);
	/* While running, the VM's writes live in buffers that the next
	 * checkpoint drops by design: there is nothing to make durable.
	 */
	if (r->state == SECONDARY_RUNNING) {
		pthread_rwlock_unlock(&r->gate);
		return 0;
	}
	if (r->state != SECONDARY_FAILOVER &&
	    r->state != SECONDARY_FAILOVER_FAILED) {
		pthread_rwlock_unlock(&r->gate);
		return d->img->ops->flush(d->img);
	}
	/* Failover: the gate held keeps the journal open meanwhile.  S and
	 * active first, then the records that say where they are newer.
	 */
	ret = sec_notes_flush(d);
	pthread_rwlock_unlock(&r->gate);
	return ret;
}

void
secondary_set_tap(struct secondary *r, const struct secondary_tap *tap)
{
	r->tap = tap ? *tap : (struct secondary_tap){ 0 };
}
