/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_REPLICA_H
#define COLOFS_REPLICA_H

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

struct replica;
struct replica_disk;

/* An empty group.  The factory makes the hidden and active stores. */
struct replica *replica_new(const struct store_factory *factory);
/* Waits for a running commit to stop (cancelling it), frees every disk and
 * closes their images.  NULL is a no-op.
 */
void replica_free(struct replica *r);

/* Adds a disk and takes ownership of img (also on failure).  Only in
 * REPLICA_NONE.  NULL with errno (EEXIST for a duplicate name).
 */
struct replica_disk *replica_add_disk(struct replica *r, const char *name,
				      struct image *img);

size_t replica_ndisks(const struct replica *r);
struct replica_disk *replica_disk_at(struct replica *r, size_t i);
struct replica_disk *replica_find_disk(struct replica *r, const char *name);
uint64_t replica_disk_size(const struct replica_disk *d);
/* The disk's image, still the replica's (protect in place lends it to a
 * primary once the replica is done and idle).
 */
struct image *replica_disk_image(struct replica_disk *d);

/* Control.  0, or -1 with errno and the reason in the replica's error.
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
int replica_start(struct replica *r);
/* start, also when S may be behind the primary (below). */
int replica_start_force(struct replica *r);
int replica_checkpoint(struct replica *r);
int replica_stop(struct replica *r);
int replica_failover(struct replica *r);

/* Durability.  With a journal directory, a failover first makes what its
 * commit needs durable (see "Durability" in secondary.c): a journal per disk
 * in jdir, and the buffers as files in bdir, named PREFIX.DISK.journal,
 * PREFIX.DISK.hidden and PREFIX.DISK.active.  bdir NULL: memory buffers
 * with nowhere to put them, so the failover is not crash-safe.  Set before
 * start; the strings are copied.  0, or -1 with errno.
 */
int replica_set_durable(struct replica *r, const char *jdir,
			const char *bdir, const char *prefix);

/* The generation a failover's journals record in their header (0: none,
 * the default).  Set before failover.
 */
void replica_set_journal_generation(struct replica *r, uint64_t gen);

/* Called before the state it names takes effect where that matters for
 * safety (done, failover once its journals are durable, with journaled
 * saying whether they are), and after start and a failed commit; the
 * daemon writes its state file there.  A failure (-1) refuses stop, and
 * turns the end of a commit into failover_failed.  Never called with a
 * replica lock that I/O needs held.
 */
/* A test hook: called by a view write each time it starts waiting for a
 * failover to become durable (NULL: none).
 */
extern void (*replica_failover_wait_hook)(struct replica *r);

typedef int replica_state_hook(void *opaque, enum replica_state next,
			       bool journaled);
void replica_set_state_hook(struct replica *r, replica_state_hook *fn,
			    void *opaque);

/* What S takes that the primary did not send: the failover commit's
 * buffered extents and the view's writes in failover, failover_failed
 * and done.  write is called before those bytes reach S (with the disk's
 * index, in the order added); -1 fails the write or the commit.  start
 * is called when start leaves none for running: S is the primary's
 * again, or (consistent false: start force) may be behind it.  Set
 * before start; tap is copied; NULL removes it.
 */
struct replica_tap {
	int (*write)(void *opaque, size_t disk, uint64_t off, uint64_t len);
	void (*start)(void *opaque, bool consistent);
	void *opaque;
};
void replica_set_tap(struct replica *r, const struct replica_tap *tap);
/* Whether S can be taken to hold every write the primary got a reply
 * for: false after an unclean stop in running (the primary may have gone
 * on writing without this secondary), until a primary connects
 * (replica_note_primary_connected, called by the listener once a client
 * has negotiated an export; it calls the state hook so that the daemon
 * remembers).  While false, start refuses with EAGAIN: replica_start_force
 * starts anyway.  Initially true.
 */
void replica_set_s_consistent(struct replica *r, bool consistent);
bool replica_s_consistent(struct replica *r);
void replica_note_primary_connected(struct replica *r);

/* At start-up, in none, once every disk is added:
 *   replica_restore_done: none -> done (a promoted secondary restarting);
 *   replica_resume_failover: reloads the buffers and journals that a
 *     failover cut short left in the durable directories and resumes its
 *     commit (-> failover, then done).
 * 0, or -1 with errno and the reason recorded.
 */
int replica_restore_done(struct replica *r);
/* In none at start-up, when no failover is to be resumed: removes the
 * journals and buffer files of a failover killed before it was durable
 * (the state file still said running): each buffer file is as large as
 * the disk.  Nothing else would remove them before the next failover.
 */
void replica_drop_leftovers(struct replica *r);
int replica_resume_failover(struct replica *r);

/* A planned restart in running (the daemon's live restart), with the
 * durable directories set:
 *   replica_handover: with no I/O in flight and none to come, writes
 *     what a failover would (a journal of each buffer's ranges, the
 *     buffers as files) and keeps them; the state stays running;
 *   replica_resume_running: in the next process, in none: loads them,
 *     -> running, exactly as handed over; the files' names go (the
 *     buffers keep them open).
 * 0, or -1 with errno and the reason recorded.
 */
int replica_handover(struct replica *r);
int replica_resume_running(struct replica *r);

enum replica_state replica_state(struct replica *r);
/* Blocks until no failover is being made durable and no commit is
 * running.  Not with ctl_lock held (not from a state hook).
 */
void replica_wait_commit(struct replica *r);
/* 1 if primary writes are accepted (none or running), else 0. */
int replica_accepts_primary(struct replica *r);

/* View I/O (the secondary VM).  Whole transfers within the disk: 0, or -1
 * with errno (EINVAL beyond the end, EIO for a view write in none); a
 * refused or failed write records its reason (.colo/error).  A write
 * during failover reaches S and, with journals, its journal record
 * before it returns.  replica_view_flush: nothing while running (the
 * buffers are dropped at the next checkpoint anyway); S otherwise, and in
 * failover also the active buffer and the journal, so that a flushed
 * write outlives a power cut.
 */
int replica_view_read(struct replica_disk *d, void *buf, size_t len,
		      uint64_t off);
int replica_view_write(struct replica_disk *d, const void *buf, size_t len,
		       uint64_t off);
/* Zeroing, as fallocate does it on a raw file: afterwards the range reads
 * zeros.  replica_view_zero (ZERO_RANGE) keeps S's blocks allocated where
 * it writes S (done, failover); replica_view_punch (PUNCH_HOLE) may punch
 * holes there.  While running both zero the active buffer, and the
 * failover commit writes those zeros into S as data.
 */
int replica_view_zero(struct replica_disk *d, uint64_t off, uint64_t len);
int replica_view_punch(struct replica_disk *d, uint64_t off, uint64_t len);

/* A view read without a copy: where V's bytes of [off, off+len) live, when
 * they live in one layer: len bytes at pos of fd, or len bytes at mem.
 * The range stays locked (and checkpoints wait) until
 * replica_view_read_end, so the caller must send the bytes before then:
 * the FUSE layer splices them into its reply.  Returns 0, or -1 with
 * errno: EAGAIN (nothing held: use replica_view_read) when len is 0, the
 * range spans layers, or its layer has neither an fd nor memory (qcow2);
 * EINVAL beyond the end.
 */
struct replica_seg {
	int fd;				/* >= 0: read from fd at pos */
	uint64_t pos;
	const void *mem;		/* else: the bytes are here */
};

struct replica_read {			/* the caller's; opaque */
	struct replica_disk *d;
	void *lock;
	char space[64];
};

int replica_view_read_begin(struct replica_disk *d, uint64_t off, size_t len,
			    struct replica_read *rd, struct replica_seg *seg);
void replica_view_read_end(struct replica_read *rd);
int replica_view_flush(struct replica_disk *d);

/* Primary I/O (the NBD listener).  Reads return S.  Writes are refused
 * with ESHUTDOWN from failover on.  A write is applied in full before it
 * returns 0; on -1, S is untouched if the save into hidden failed.
 */
int replica_primary_read(struct replica_disk *d, void *buf, size_t len,
			 uint64_t off);
int replica_primary_write(struct replica_disk *d, const void *buf,
			  size_t len, uint64_t off);
int replica_primary_zero(struct replica_disk *d, uint64_t off, uint64_t len);
int replica_primary_flush(struct replica_disk *d);

/* Caps the bytes held in all buffers of the group (0: no cap), counting
 * only bytes that take room (a zeroed or trimmed range is a hole in
 * either store).  While running, a view or primary write that would need
 * more fails whole with ENOSPC, and the reason is recorded; a checkpoint
 * frees the buffers.  A store write that meets ENOSPC first waits for the
 * buffers a checkpoint dropped to be freed, frees the spares, and tries
 * once more.
 */
void replica_set_buffer_limit(struct replica *r, uint64_t bytes);

/* Errors for the FT/HA manager (.colo/error, core/errlog.h).  The last
 * one raised is current until the condition ends: a successful start,
 * checkpoint or failover clears it (the history keeps it).
 */
void replica_record_error(struct replica *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void replica_clear_error(struct replica *r);
/* Copies the current error ("" if none) into buf; returns when it was
 * raised (0: none).
 */
time_t replica_last_error(struct replica *r, char *buf, size_t len);
/* Its errors, current and past (.colo/errors reads the history). */
struct errlog *replica_errors(struct replica *r);

/* The primary's front end reports a primary that went away without
 * saying goodbye (the listener: no NBD_CMD_DISC): the replica may have
 * missed writes.  why says how; counted in the status.
 */
void replica_note_unclean_disconnect(struct replica *r, const char *why);

struct replica_disk_status {
	const char *name;		/* valid while the replica lives */
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
 * those <= replica_checkpoint_bucket_ns[i] (and above the bound before),
 * the last one the rest.
 */
#define REPLICA_CHECKPOINT_BUCKETS 14
extern const uint64_t
replica_checkpoint_bucket_ns[REPLICA_CHECKPOINT_BUCKETS - 1];

struct replica_status {
	enum replica_state state;
	bool s_consistent;		/* replica_s_consistent */
	uint64_t checkpoints;
	uint64_t last_checkpoint_ns;
	uint64_t checkpoint_hist[REPLICA_CHECKPOINT_BUCKETS];	/* per bucket */
	uint64_t checkpoint_ns_sum;
	uint64_t errors;		/* errors recorded, refusals included */
	uint64_t unclean_disconnects;
	uint64_t buffer_bytes;		/* taking room in all buffers */
	uint64_t buffer_limit;		/* 0: none */
	/* Pages (memory) or blocks (file) the buffers keep from earlier
	 * epochs so that checkpoints recycle them (see replica_checkpoint);
	 * not counted in buffer_bytes.
	 */
	uint64_t buffer_retained_bytes;
	char error[512];
	time_t error_time;		/* when error was raised; 0: none */
	size_t ndisks;
	struct replica_disk_status *disks;	/* ndisks entries */
};

/* A consistent snapshot.  0, or -1 with errno.  Free with
 * replica_status_release.
 */
int replica_get_status(struct replica *r, struct replica_status *st);
void replica_status_release(struct replica_status *st);

#endif
