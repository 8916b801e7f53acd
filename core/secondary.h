/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_SECONDARY_H
#define COLOFS_SECONDARY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "errlog.h"
#include "image.h"
#include "state.h"
#include "store.h"

/* The secondary side of COLO block replication for a group of disks.
 *
 *   S = the secondary disk (an image), written by the primary over NBD;
 *   V = the secondary VM's view = active over hidden over S.
 *
 * Two ways in per disk: "primary" I/O (the NBD listener: works on S) and
 * "view" I/O (the FUSE disk file: works on V).  The control words act on
 * every disk of the group at once.  See secondary.c for the contract.
 */

struct secondary;
struct secondary_disk;

/* An empty group.  The factory makes the hidden and active stores. */
struct secondary *secondary_new(const struct store_factory *factory);
/* Waits for a running commit to stop (cancelling it), frees every disk and
 * closes their images.  NULL is a no-op.
 */
void secondary_free(struct secondary *r);

/* Adds a disk and takes ownership of img (also on failure).  Only in
 * SECONDARY_NONE.  NULL with errno (EEXIST for a duplicate name).
 */
struct secondary_disk *secondary_add_disk(struct secondary *r, const char *name,
				      struct image *img);

size_t secondary_ndisks(const struct secondary *r);
struct secondary_disk *secondary_disk_at(struct secondary *r, size_t i);
struct secondary_disk *secondary_find_disk(struct secondary *r, const char *name);
uint64_t secondary_disk_size(const struct secondary_disk *d);
/* The disk's image, still the secondary's (protect in place lends it to a
 * primary once the secondary is done and idle).
 */
struct image *secondary_disk_image(struct secondary_disk *d);

/* Control.  0, or -1 with errno and the reason in the secondary's error.
 * A word never does nothing silently: where it has nothing to do it
 * fails, so that an operator's `echo start` after a failover says why.
 *   start:      none -> running; EBUSY in every other state.
 *   checkpoint: empties both buffers (V := S); EINVAL in none; EBUSY in
 *               failover, failover_failed and done.
 *   stop:       empties both buffers, -> done; EINVAL in none; EBUSY in
 *               failover, failover_failed and done.
 *   failover:   running or failover_failed -> failover once it is
 *               durable (the journals and buffer files, then the state
 *               hook), then commits in the background; until then the
 *               status shows the state before.  EIO (-> failover_failed)
 *               if it cannot be made durable; EINVAL in none; EBUSY in
 *               failover and done.
 */
/* A checkpoint empties the buffers in O(1) by swapping in spares: the
 * buffers the checkpoint before dropped, emptied in the background with
 * their pages kept (memory mapped, file blocks allocated), so that a
 * steady-state epoch overwrites pages instead of faulting fresh ones in.
 * Each keeps the pages of the largest of its slot's last 4 epochs and
 * gives back the rest (MADV_FREE, punched holes): the memory of a disk's
 * buffers is at most buffer_bytes plus buffer_retained_bytes, and the
 * latter at most twice the largest of the last 4 epochs of hidden plus
 * of active (two buffers per slot).  Stop and failover free the spares.
 */
int secondary_start(struct secondary *r);
/* start, also when S may be behind the primary (below). */
int secondary_start_force(struct secondary *r);
int secondary_checkpoint(struct secondary *r);
int secondary_stop(struct secondary *r);
int secondary_failover(struct secondary *r);

/* Durability.  With a journal directory, a failover first makes what its
 * commit needs durable (see "Durability" in secondary.c): a journal per disk
 * in jdir, and the buffers as files in bdir, named PREFIX.DISK.journal,
 * PREFIX.DISK.hidden and PREFIX.DISK.active.  bdir NULL: memory buffers
 * with nowhere to put them, so the failover is not crash-safe.  Set before
 * start; the strings are copied.  0, or -1 with errno.
 */
int secondary_set_durable(struct secondary *r, const char *jdir,
			const char *bdir, const char *prefix);

/* The generation a failover's journals record in their header (0: none,
 * the default).  Set before failover.
 */
void secondary_set_journal_generation(struct secondary *r, uint64_t gen);

/* Called before the state it names takes effect where that matters for
 * safety (done, failover once its journals are durable, with journaled
 * saying whether they are), and after start and a failed commit; the
 * daemon writes its state file there.  A failure (-1) refuses stop, and
 * turns the end of a commit into failover_failed.  Never called with a
 * secondary lock that I/O needs held.
 */
/* A test hook: called by a view write each time it starts waiting for a
 * failover to become durable (NULL: none).
 */
extern void (*secondary_failover_wait_hook)(struct secondary *r);

typedef int secondary_state_hook(void *opaque, enum secondary_state next,
			       bool journaled);
void secondary_set_state_hook(struct secondary *r, secondary_state_hook *fn,
			    void *opaque);

/* What S takes that the primary did not send: the failover commit's
 * buffered extents and the view's writes in failover, failover_failed
 * and done.  write is called before those bytes reach S (with the disk's
 * index, in the order added); -1 fails the write or the commit.  start
 * is called when start leaves none for running: S is the primary's
 * again, or (consistent false: start force) may be behind it.  Set
 * before start; tap is copied; NULL removes it.
 */
struct secondary_tap {
	int (*write)(void *opaque, size_t disk, uint64_t off, uint64_t len);
	void (*start)(void *opaque, bool consistent);
	void *opaque;
};
void secondary_set_tap(struct secondary *r, const struct secondary_tap *tap);
/* Whether S can be taken to hold every write the primary got a reply
 * for: false after an unclean stop in running (the primary may have gone
 * on writing without this secondary), until a primary connects
 * (secondary_note_primary_connected, called by the listener once a client
 * has negotiated an export; it calls the state hook so that the daemon
 * remembers).  While false, start refuses with EAGAIN: secondary_start_force
 * starts anyway.  Initially true.
 */
void secondary_set_s_consistent(struct secondary *r, bool consistent);
bool secondary_s_consistent(struct secondary *r);
void secondary_note_primary_connected(struct secondary *r);

/* At start-up, in none, once every disk is added:
 *   secondary_restore_done: none -> done (a promoted secondary restarting);
 *   secondary_resume_failover: reloads the buffers and journals that a
 *     failover cut short left in the durable directories and resumes its
 *     commit (-> failover, then done).
 * 0, or -1 with errno and the reason recorded.
 */
int secondary_restore_done(struct secondary *r);
/* In none at start-up, when no failover is to be resumed: removes the
 * journals and buffer files of a failover killed before it was durable
 * (the state file still said running): each buffer file is as large as
 * the disk.  Nothing else would remove them before the next failover.
 */
void secondary_drop_leftovers(struct secondary *r);
int secondary_resume_failover(struct secondary *r);

/* A planned restart in running (the daemon's live restart), with the
 * durable directories set:
 *   secondary_handover: with no I/O in flight and none to come, writes
 *     what a failover would (a journal of each buffer's ranges, the
 *     buffers as files) and keeps them; the state stays running;
 *   secondary_resume_running: in the next process, in none: loads them,
 *     -> running, exactly as handed over; the files' names go (the
 *     buffers keep them open).
 * 0, or -1 with errno and the reason recorded.
 */
int secondary_handover(struct secondary *r);
int secondary_resume_running(struct secondary *r);

enum secondary_state secondary_state(struct secondary *r);
/* Blocks until no failover is being made durable and no commit is
 * running.  Not with ctl_lock held (not from a state hook).
 */
void secondary_wait_commit(struct secondary *r);
/* 1 if primary writes are accepted (none or running), else 0. */
int secondary_accepts_primary(struct secondary *r);

/* View I/O (the secondary VM).  Whole transfers within the disk: 0, or -1
 * with errno (EINVAL beyond the end, EIO for a view write in none); a
 * refused or failed write records its reason (.colo/error).  A write
 * during failover reaches S and, with journals, its journal record
 * before it returns.  secondary_view_flush: nothing while running (the
 * buffers are dropped at the next checkpoint anyway); S otherwise, and in
 * failover also the active buffer and the journal, so that a flushed
 * write outlives a power cut.
 */
int secondary_view_read(struct secondary_disk *d, void *buf, size_t len,
		      uint64_t off);
int secondary_view_write(struct secondary_disk *d, const void *buf, size_t len,
		       uint64_t off);
/* Zeroing, as fallocate does it on a raw file: afterwards the range reads
 * zeros.  secondary_view_zero (ZERO_RANGE) keeps S's blocks allocated where
 * it writes S (done, failover); secondary_view_punch (PUNCH_HOLE) may punch
 * holes there.  While running both zero the active buffer, and the
 * failover commit writes those zeros into S as data.
 */
int secondary_view_zero(struct secondary_disk *d, uint64_t off, uint64_t len);
int secondary_view_punch(struct secondary_disk *d, uint64_t off, uint64_t len);

/* A view read without a copy: where V's bytes of [off, off+len) live, when
 * they live in one layer: len bytes at pos of fd, or len bytes at mem.
 * The range stays locked (and checkpoints wait) until
 * secondary_view_read_end, so the caller must send the bytes before then:
 * the FUSE layer splices them into its reply.  Returns 0, or -1 with
 * errno: EAGAIN (nothing held: use secondary_view_read) when len is 0, the
 * range spans layers, or its layer has neither an fd nor memory (qcow2);
 * EINVAL beyond the end.
 */
struct secondary_seg {
	int fd;				/* >= 0: read from fd at pos */
	uint64_t pos;
	const void *mem;		/* else: the bytes are here */
};

struct secondary_read {			/* the caller's; opaque */
	struct secondary_disk *d;
	void *lock;
	char space[64];
};

int secondary_view_read_begin(struct secondary_disk *d, uint64_t off, size_t len,
			    struct secondary_read *rd, struct secondary_seg *seg);
void secondary_view_read_end(struct secondary_read *rd);
int secondary_view_flush(struct secondary_disk *d);

/* Primary I/O (the NBD listener).  Reads return S.  Writes are refused
 * with ESHUTDOWN from failover on.  A write is applied in full before it
 * returns 0; on -1, S is untouched if the save into hidden failed.
 */
int secondary_primary_read(struct secondary_disk *d, void *buf, size_t len,
			 uint64_t off);
int secondary_primary_write(struct secondary_disk *d, const void *buf,
			  size_t len, uint64_t off);
int secondary_primary_zero(struct secondary_disk *d, uint64_t off, uint64_t len);
int secondary_primary_flush(struct secondary_disk *d);

/* Caps the bytes held in all buffers of the group (0: no cap), counting
 * only bytes that take room (a zeroed or trimmed range is a hole in
 * either store).  While running, a view or primary write that would need
 * more fails whole with ENOSPC, and the reason is recorded; a checkpoint
 * frees the buffers.  A store write that meets ENOSPC first waits for the
 * buffers a checkpoint dropped to be freed, frees the spares, and tries
 * once more.
 */
void secondary_set_buffer_limit(struct secondary *r, uint64_t bytes);

/* buffer_warm: makes SPARES spare buffers for each slot of each disk (2 x
 * hidden and active) in the background, each with bytes of its store
 * (at most the disk's size) faulted in, and keeps at least that much in
 * every store from then on (the retention's floor), so that the first
 * epochs after start, like the later ones, overwrite mapped pages instead
 * of faulting fresh ones in.  Memory stores only (a file store gives up:
 * the error is recorded).  Called once the disks are added, in none; a
 * start waits for the warming still under way (a checkpoint would too,
 * so it does nothing in any other state, nor with bytes 0).  The status's
 * buffer_warming_bytes says how much is left.  0, or -1 with errno
 * (ENOMEM).
 */
int secondary_warm(struct secondary *r, uint64_t bytes);

/* Errors for the FT/HA manager (.colo/error, core/errlog.h).  The last
 * one raised is current until the condition ends: a successful start,
 * checkpoint or failover clears it (the history keeps it).
 */
void secondary_record_error(struct secondary *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void secondary_clear_error(struct secondary *r);
/* Copies the current error ("" if none) into buf; returns when it was
 * raised (0: none).
 */
time_t secondary_last_error(struct secondary *r, char *buf, size_t len);
/* Its errors, current and past (.colo/errors reads the history). */
struct errlog *secondary_errors(struct secondary *r);

/* The primary's front end reports a primary that went away without
 * saying goodbye (the listener: no NBD_CMD_DISC): the secondary may have
 * missed writes.  why says how; counted in the status.
 */
void secondary_note_unclean_disconnect(struct secondary *r, const char *why);

struct secondary_disk_status {
	const char *name;		/* valid while the secondary lives */
	uint64_t size;
	uint64_t hidden_bytes, hidden_extents;
	uint64_t active_bytes, active_extents;
	uint64_t commit_remaining_bytes;
	uint64_t primary_write_bytes, view_write_bytes;
	uint64_t view_writes;		/* view write requests, zeroing included */
	uint64_t view_reads, view_read_bytes;
	uint64_t overlay_bytes;		/* qcow2 overlay, else 0 */
	uint64_t map_mem_bytes;		/* both extent maps' heap */
};

/* Checkpoint durations are counted in buckets: bucket i < last holds
 * those <= secondary_checkpoint_bucket_ns[i] (and above the bound before),
 * the last one the rest.
 */
#define SECONDARY_CHECKPOINT_BUCKETS 14
extern const uint64_t
secondary_checkpoint_bucket_ns[SECONDARY_CHECKPOINT_BUCKETS - 1];

struct secondary_status {
	enum secondary_state state;
	bool s_consistent;		/* secondary_s_consistent */
	uint64_t checkpoints;
	uint64_t last_checkpoint_ns;
	uint64_t checkpoint_hist[SECONDARY_CHECKPOINT_BUCKETS];	/* per bucket */
	uint64_t checkpoint_ns_sum;
	uint64_t errors;		/* errors recorded, refusals included */
	uint64_t unclean_disconnects;
	uint64_t buffer_bytes;		/* taking room in all buffers */
	uint64_t buffer_limit;		/* 0: none */
	/* Pages (memory) or blocks (file) the buffers keep from earlier
	 * epochs so that checkpoints recycle them (see secondary_checkpoint);
	 * not counted in buffer_bytes.
	 */
	uint64_t buffer_retained_bytes;
	uint64_t buffer_warming_bytes;	/* buffer_warm's, still to fault in */
	char error[512];
	time_t error_time;		/* when error was raised; 0: none */
	size_t ndisks;
	struct secondary_disk_status *disks;	/* ndisks entries */
};

/* A consistent snapshot.  0, or -1 with errno.  Free with
 * secondary_status_release.
 */
int secondary_get_status(struct secondary *r, struct secondary_status *st);
void secondary_status_release(struct secondary_status *st);

#endif
