/* SPDX-License-Identifier: MIT */
/* Write-behind: the writeback of S's fresh pages, started early.
 *
 * The primary's writes land in S through the page cache, and the kernel
 * writes them back only when they are dirty_expire_centisecs old (30 s by
 * default) or the dirty memory passes its background threshold.  So a
 * failover's final fdatasync of S used to write the last 30 s of the
 * primary's writes before it could report done, and a commit copied all
 * its buffers into the cache before any of it went to the disk.  Here a
 * thread per file starts the writeback as the writes come:
 *
 *   writer (NBD, FUSE, commit)          writebehind thread
 *     pwrite(fd, ...)
 *     writebehind_note(off, len) --+    waits on cond
 *       span |= [off, off+len)     |
 *       pending += len             +--> signal: a span begins (arm the
 *                                       idle timer) or fills up (>= every)
 *                                       full, or WB_IDLE_MS later:
 *                                       takes the span, pending = 0,
 *                                       sync_file_range(fd, span, WRITE)
 *
 * The noted ranges coalesce into one span, their bounding range: the
 * kernel finds the dirty pages in a range by its tags, so a wide span with
 * few dirty pages costs little, and pages dirtied by someone else in it
 * are started too, which is harmless.  A span that stays below every is
 * started WB_IDLE_MS after it began, so that the tail of a burst does not
 * wait for the kernel's expiry either.  And WB_IDLE_MS after the last
 * start, with nothing noted since, one more start covers everything
 * started since the previous such sweep: under I/O pressure the kernel
 * passes over some of the dirty pages a start asks for (another writer
 * syncing: a few MiB of 64 stayed dirty for the whole expiry), and the
 * sweep gets them out; it costs little, since the kernel finds dirty pages
 * by their tags.  An idle thread with nothing to sweep sleeps on its
 * condition, with no timer.
 *
 * sync_file_range(SYNC_FILE_RANGE_WRITE) alone starts the I/O and returns
 * (WB_SYNC_NONE: pages already under writeback are skipped); it may still
 * block on a full device queue, which is why it runs here and never on a
 * request's path.  It is never given a WAIT flag: waiting checks and
 * advances the file's write-back error cursor (errseq, as fdatasync does),
 * so an error seen here would be consumed and the caller's fdatasync would
 * return 0 over lost pages, breaking fdio_datasync's sticky failure
 * (fdio.h).  Without WAIT, a failed write-back stays recorded on the file
 * (or its pages stay dirty) and the next fdatasync reports it; the call's
 * own failures are logged at debug level and otherwise ignored.
 *
 * Lock: wb->lock guards the span, the counters and stop; it is never held
 * across the system call, so a writer's note waits for a few instructions
 * at most.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "log.h"
#include "writebehind.h"

#define WB_IDLE_MS 1000		/* a tail below every is started after this */

struct writebehind {
	int fd;				/* not owned */
	char *what;
	uint64_t every;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* monotonic: a span began or filled,
					 * or stop */
	uint64_t lo, hi;		/* protected by lock: not started */
	uint64_t pending;		/* protected by lock: bytes noted */
	uint64_t swept_lo, swept_hi;	/* protected by lock: started since
					 * the last sweep (empty: lo == hi) */
	bool stop;			/* protected by lock */
	uint64_t calls, bytes;		/* protected by lock: started so far */
};

static void
start(struct writebehind *wb, uint64_t lo, uint64_t hi, uint64_t noted)
{
	if (sync_file_range(wb->fd, (off64_t) lo, (off64_t) (hi - lo),
			    SYNC_FILE_RANGE_WRITE) == -1)
		log_debug("write-behind %s at %" PRIu64 "+%" PRIu64 ": %m",
			  wb->what, lo, hi - lo);
	pthread_mutex_lock(&wb->lock);
	wb->calls++;
	wb->bytes += noted;
	pthread_mutex_unlock(&wb->lock);
}

static void *
writebehind_main(void *arg)
{
	struct writebehind *wb = arg;
	struct timespec until;
	uint64_t lo, hi, noted;

	pthread_mutex_lock(&wb->lock);
	while (!wb->stop) {
		if (wb->pending == 0 && wb->swept_lo < wb->swept_hi) {
			/* Idle after a burst: once more over all of it, for
			 * the pages the kernel skipped (WB_SYNC_NONE passes
			 * over some under I/O pressure; they would wait for
			 * the expiry).  Clean pages cost nothing there.
			 */
			until = deadline_in_ms(WB_IDLE_MS);
			if (pthread_cond_timedwait(&wb->cond, &wb->lock,
						   &until) != ETIMEDOUT)
				continue;
			if (wb->pending != 0 || wb->stop)
				continue;
			lo = wb->swept_lo;
			hi = wb->swept_hi;
			wb->swept_lo = wb->swept_hi = 0;
			pthread_mutex_unlock(&wb->lock);
			start(wb, lo, hi, 0);
			pthread_mutex_lock(&wb->lock);
			continue;
		}
		if (wb->pending == 0) {
			pthread_cond_wait(&wb->cond, &wb->lock);
			continue;
		}
		if (wb->pending < wb->every) {
			until = deadline_in_ms(WB_IDLE_MS);
			if (pthread_cond_timedwait(&wb->cond, &wb->lock,
						   &until) != ETIMEDOUT)
				continue;	/* filled up, or stop */
			if (wb->pending == 0 || wb->stop)
				continue;
		}
		lo = wb->lo;
		hi = wb->hi;
		noted = wb->pending;
		wb->pending = 0;
		if (wb->swept_lo == wb->swept_hi) {
			wb->swept_lo = lo;
			wb->swept_hi = hi;
		} else {
			wb->swept_lo = lo < wb->swept_lo ? lo : wb->swept_lo;
			wb->swept_hi = hi > wb->swept_hi ? hi : wb->swept_hi;
		}
		pthread_mutex_unlock(&wb->lock);
		start(wb, lo, hi, noted);
		pthread_mutex_lock(&wb->lock);
	}
	pthread_mutex_unlock(&wb->lock);
	return NULL;
}

struct writebehind *
writebehind_new(int fd, const char *what, uint64_t every)
{
	struct writebehind *wb = calloc(1, sizeof *wb);
	sigset_t all, old;
	int err;

	if (wb == NULL || (wb->what = strdup(what)) == NULL) {
		log_error("write-behind %s: %m", what);
		free(wb);
		errno = ENOMEM;
		return NULL;
	}
	wb->fd = fd;
	wb->every = every > 0 ? every : 1;
	pthread_mutex_init(&wb->lock, NULL);
	cond_init_monotonic(&wb->cond);
	/* Signals are the main thread's business (fs/main.c). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&wb->thread, NULL, writebehind_main, wb);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		errno = err;
		log_error("write-behind %s: thread: %m", what);
		pthread_cond_destroy(&wb->cond);
		pthread_mutex_destroy(&wb->lock);
		free(wb->what);
		free(wb);
		errno = err;
		return NULL;
	}
	return wb;
}

void
writebehind_free(struct writebehind *wb)
{
	if (wb == NULL)
		return;
	pthread_mutex_lock(&wb->lock);
	wb->stop = true;
	pthread_cond_signal(&wb->cond);
	pthread_mutex_unlock(&wb->lock);
	pthread_join(wb->thread, NULL);
	log_debug("write-behind %s: %" PRIu64 " ranges started, %" PRIu64
		  " bytes", wb->what, wb->calls, wb->bytes);
	pthread_cond_destroy(&wb->cond);
	pthread_mutex_destroy(&wb->lock);
	free(wb->what);
	free(wb);
}

void
writebehind_note(struct writebehind *wb, uint64_t off, uint64_t len)
{
	if (len == 0)
		return;
	pthread_mutex_lock(&wb->lock);
	if (wb->pending == 0) {
		wb->lo = off;
		wb->hi = off + len;
	} else {
		wb->lo = off < wb->lo ? off : wb->lo;
		wb->hi = off + len > wb->hi ? off + len : wb->hi;
	}
	/* Wake the thread when a span begins (it arms the idle timer) and
	 * when it fills up: twice per span, not once per write.
	 */
	if (wb->pending == 0 ||
	    (wb->pending < wb->every && wb->pending + len >= wb->every))
		pthread_cond_signal(&wb->cond);
	wb->pending += len;
	pthread_mutex_unlock(&wb->lock);
}

void
writebehind_stats(struct writebehind *wb, uint64_t *calls, uint64_t *bytes)
{
	pthread_mutex_lock(&wb->lock);
	*calls = wb->calls;
	*bytes = wb->bytes;
	pthread_mutex_unlock(&wb->lock);
}
