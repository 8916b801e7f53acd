/* SPDX-License-Identifier: MIT */
/* The FUSE session loop: many threads, few of them waiting in the kernel.
 *
 * libfuse's multi-threaded loop keeps every idle thread blocked in
 * read(/dev/fuse), up to its max_idle, and starts one more whenever it
 * sees none idle, which it also sees for a moment after each reply (the
 * reply wakes the caller, whose next request arrives before the replying
 * thread counts itself idle again).  Under fio's two 4 KiB jobs its pool
 * grows to 16 threads, all asleep in the kernel, and the kernel wakes
 * them in turn (its wait queue is FIFO): each request goes to the thread
 * that has slept longest, cold.  A low max_idle is worse: threads then
 * start and exit all the time.  With 3 threads in all, the same load
 * costs half the CPU per request (doc/performance.md), but a pool that
 * small would hold requests back behind ones that block (fsync, a ctl
 * word, a write that waits for the primary's link, slow storage).
 *
 * So the pool grows as libfuse's does, but at most max_readers of its
 * threads (as many as CPUs, 2 to 8) wait in the kernel; the others park
 * on a condition variable.  A thread that takes a request and leaves no
 * reader behind adds one (wakes a parked thread, or starts one, up to
 * max_threads) before it serves the request: there is always a reader
 * while there are threads to spare, so a request that blocks never holds
 * back the requests it may wait for.  A thread that finishes a request
 * goes back to the kernel if fewer than max_readers wait there, and parks
 * otherwise.  Threads exit only at the end: their receive buffers (1 MiB)
 * stay mapped.
 *
 *    /dev/fuse ──▶ reading ──▶ serving ──┬──▶ reading (< max_readers)
 *                     ▲                  └──▶ parked (cond)
 *                     └── woken when the last reader takes a request
 *
 * One /dev/fuse file for every thread (clone_fd is libfuse's own loop's;
 * it measured the same).  The calling thread waits on a semaphore, which
 * the signal handlers interrupt (they are not SA_RESTART) and which a
 * worker posts when it sees the session exited (the last release after
 * a stop signal, an unmount, "restart").  Then every thread still waiting
 * in the kernel is cancelled there, the only place a worker accepts
 * cancellation: a request taken is always answered first.  Workers block
 * the stop signals, as libfuse's do, so that the handlers run in the
 * calling thread.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse-loop.h"
#include "log.h"

struct fuse_loop;

struct fuse_worker {
	struct fuse_loop *l;
	pthread_t tid;
	struct fuse_buf buf;	/* libfuse allocates mem at the first read */
	struct fuse_worker *next;
};

struct fuse_loop {
	struct fuse_session *se;
	unsigned max_threads, max_readers;
	sem_t finish;		/* a worker saw the session exit */
	/* Leaf lock: held for the counts and the list only, never across
	 * a read or a request.
	 */
	pthread_mutex_t lock;
	pthread_cond_t park;	/* parked workers */
	struct fuse_worker *workers;	/* protected by lock */
	unsigned threads;	/* protected by lock: started */
	/* Threads reading, or on their way there: counted when started or
	 * woken, not when they run, so that a burst of requests does not
	 * start a thread per request.
	 */
	unsigned readers;	/* protected by lock */
	unsigned parked;	/* protected by lock */
	unsigned handoffs;	/* protected by lock: parked ones woken */
	bool ending;		/* protected by lock: no new reads or threads */
	int error;		/* protected by lock: a failed read, -errno */
};

static void *worker_main(void *arg);

/* Starts one more worker, counted as a reader; l->lock held. */
static int
worker_start(struct fuse_loop *l)
{
	struct fuse_worker *w;
	sigset_t stop, old;
	int err;

	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -1;
	w->l = l;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	err = pthread_create(&w->tid, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		free(w);
		errno = err;
		log_warn("fuse: starting a worker thread: %m");
		return -1;
	}
	w->next = l->workers;
	l->workers = w;
	l->threads++;
	l->readers++;
	return 0;
}

/* One more reader: a parked thread woken, or a new one; l->lock held. */
static void
add_reader(struct fuse_loop *l)
{
	if (l->parked > l->handoffs) {
		l->handoffs++;
		l->readers++;
		pthread_cond_signal(&l->park);
	} else if (l->threads < l->max_threads) {
		worker_start(l);
	}
}

static void
buf_release(void *arg)
{
	struct fuse_buf *buf = arg;

	free(buf->mem);
	buf->mem = NULL;
}

static void *
worker_main(void *arg)
{
	struct fuse_worker *w = arg;
	struct fuse_loop *l = w->l;
	bool counted;
	int res;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_push(buf_release, &w->buf);
	pthread_mutex_lock(&l->lock);
	counted = true;		/* worker_start counted it */
	for (;;) {
		if (!counted && !l->ending &&
		    l->readers >= l->max_readers) {
			l->parked++;
			while (!l->ending && l->handoffs == 0)
				pthread_cond_wait(&l->park, &l->lock);
			l->parked--;
			if (!l->ending) {
				l->handoffs--;	/* the waker counted it */
				counted = true;
			}
		}
		if (l->ending || fuse_session_exited(l->se))
			break;
		if (!counted)
			l->readers++;
		counted = false;
		pthread_mutex_unlock(&l->lock);
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(l->se, &w->buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		pthread_mutex_lock(&l->lock);
		l->readers--;
		if (res == -EINTR)
			continue;
		if (res <= 0) {
			/* 0: unmounted (libfuse marks the session exited). */
			if (res < 0 && l->error == 0)
				l->error = res;
			fuse_session_exit(l->se);
			break;
		}
		/* Leave a reader behind while this request is served. */
		if (l->readers == 0 && !l->ending)
			add_reader(l);
		pthread_mutex_unlock(&l->lock);
		fuse_session_process_buf(l->se, &w->buf);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	sem_post(&l->finish);
	pthread_cleanup_pop(1);
	return NULL;
}

unsigned
fuse_loop_default_readers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 2)
		n = 2;
	if (n > 8)
		n = 8;
	return (unsigned)n;
}

int
fuse_loop_run(struct fuse_session *se, unsigned max_threads,
	      unsigned max_readers)
{
	struct fuse_loop l;
	struct fuse_worker *w, *next;
	int err = 0;

	memset(&l, 0, sizeof l);
	l.se = se;
	l.max_threads = max_threads > 0 ? max_threads : 1;
	l.max_readers = max_readers > 0 ? max_readers : 1;
	if (sem_init(&l.finish, 0, 0) == -1)
		return -1;
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.park, NULL);

	pthread_mutex_lock(&l.lock);
	if (worker_start(&l) == -1)
		err = errno;
	pthread_mutex_unlock(&l.lock);
	while (err == 0 && !fuse_session_exited(se))
		sem_wait(&l.finish);

	pthread_mutex_lock(&l.lock);
	l.ending = true;
	pthread_cond_broadcast(&l.park);
	/* Only a thread waiting in read accepts the cancellation. */
	for (w = l.workers; w != NULL; w = w->next)
		pthread_cancel(w->tid);
	pthread_mutex_unlock(&l.lock);
	for (w = l.workers; w != NULL; w = next) {
		next = w->next;
		pthread_join(w->tid, NULL);
		free(w);
	}
	if (err == 0 && l.error != 0)
		err = -l.error;
	pthread_cond_destroy(&l.park);
	pthread_mutex_destroy(&l.lock);
	sem_destroy(&l.finish);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}
