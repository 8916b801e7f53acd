/* SPDX-License-Identifier: MIT */
/* The FUSE session loop: many threads, few of them busy at a time.
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
 * costs half the CPU per request (doc/performance.md).
 *
 * So a thread that finishes a request goes back to the kernel only if
 * no thread waits there, or if fewer than `active` threads (one per CPU,
 * at least 2) read or serve; the others park on a condition variable.  Under a
 * steady load of quick requests that is a pool of `active` threads.  More
 * are needed when requests block (a read that misses the cache, fsync, a
 * ctl word, a checkpoint that waits for the reads in flight, a primary's
 * write that waits for its link): a request that blocks must never hold
 * back the requests it may wait for, and slow storage wants many requests
 * in flight.  So a reader is added (a parked thread woken, or a new one
 * started, up to max_threads)
 *   - by a thread that takes a request and leaves no reader behind, when
 *     fewer than `active` threads are busy, or when the request is not a
 *     disk READ or WRITE (the caller's `quick`), or while requests are
 *     slow: one of the last SLOW_HOLD took more than SLOW_NS to serve
 *     (the pool then grows as libfuse's does, for I/O-bound loads);
 *   - by the calling thread, which otherwise waits for the end, at each
 *     tick that finds no reader and no request completed since the last
 *     one: every 2 ms while requests are served, every 200 ms otherwise.
 * Threads exit only at the end: their receive buffers (1 MiB) stay
 * mapped.
 *
 *    /dev/fuse ──▶ reading ──▶ serving ──┬──▶ reading (≤ active busy)
 *                     ▲                  └──▶ parked (cond)
 *                     └─── woken (valve) ◀────────┘
 *
 * One /dev/fuse file for every thread (clone_fd is libfuse's own loop's;
 * it measured the same).  The calling thread waits on a semaphore, which
 * fuse_loop_exit posts (the last release after a stop signal, "restart";
 * the signal handlers interrupt the wait too: they are not SA_RESTART),
 * and a worker when it sees the session exited (an unmount).  The loop's
 * end is its own flag, not libfuse's fuse_session_exit: libfuse drops a
 * request read after its session exited (never answered, its caller
 * asleep until the connection goes), and threads are reading then.  The
 * session is marked exited once every worker is joined.
 *
 * The requests taken by the end may wait for others still in the kernel
 * (a checkpoint's write-back of pages dirtied through mmap sends writes;
 * an invalidation waits for the reads in flight), so one thread reads
 * on, serving what comes, until they are answered: the "holding"
 * requests, those taken before the end and any later one that is not
 * quick (a disk READ or WRITE never waits for another request, so a VM's
 * steady I/O does not keep the loop going).  Then every thread still
 * waiting in the kernel is cancelled there, the only place a worker
 * accepts cancellation: a request taken is always answered first.
 * Workers block the stop signals, as libfuse's do, so that the handlers
 * run in the calling thread.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuse-loop.h"
#include "log.h"

#define VALVE_BUSY_US 2000
#define VALVE_IDLE_MS 200
#define SLOW_NS 1000000		/* a request served in more is slow */
#define SLOW_HOLD 64		/* requests a slow one keeps the pool open */

struct fuse_loop;

struct fuse_worker {
	struct fuse_loop *l;
	pthread_t tid;
	struct fuse_buf buf;	/* libfuse allocates mem at the first read */
	bool holding;		/* its request keeps the end waiting */
	struct fuse_worker *next;
};

struct fuse_loop {
	struct fuse_session *se;
	bool (*quick)(const void *in);
	unsigned max_threads, active;
	/* Leaf lock: held for the counts and the list only, never across
	 * a read or a request.
	 */
	pthread_mutex_t lock;
	pthread_cond_t park;	/* parked workers */
	struct fuse_worker *workers;	/* protected by lock */
	unsigned threads;	/* protected by lock: started */
	/* Threads reading, or on their way there (counted when started or
	 * woken, not when they run, so that a burst of requests does not
	 * start a thread per request), and threads serving a request.
	 */
	unsigned readers;	/* protected by lock */
	unsigned serving;	/* protected by lock */
	unsigned parked;	/* protected by lock */
	unsigned handoffs;	/* protected by lock: parked ones woken */
	unsigned long served;	/* protected by lock: requests completed */
	unsigned slow;		/* protected by lock: SLOW_HOLD after a slow one,
				 * down by one per quick one */
	/* protected by lock: the session ended (wait_end returned); requests
	 * taken since do not hold the end unless they are not quick.
	 */
	bool draining;
	unsigned holding;	/* protected by lock: requests the end waits for */
	bool gone;		/* protected by lock: /dev/fuse cannot be read */
	bool ending;		/* protected by lock: no new reads or threads */
	int error;		/* protected by lock: a failed read, -errno */
};

static void *worker_main(void *arg);

/* fuse_loop_exit's: one loop per process.  The semaphore is never
 * destroyed, so that a signal handler may post it at any time.
 */
static atomic_bool exit_requested;
static atomic_bool finish_ready;
static sem_t finish;

void
fuse_loop_exit(struct fuse_session *se)
{
	(void)se;
	atomic_store(&exit_requested, true);
	if (atomic_load(&finish_ready))
		sem_post(&finish);
}

bool
fuse_loop_exiting(struct fuse_session *se)
{
	return atomic_load(&exit_requested) || fuse_session_exited(se);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
	uint64_t t0, t1;
	bool counted;
	int res;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cleanup_push(buf_release, &w->buf);
	pthread_mutex_lock(&l->lock);
	counted = true;		/* worker_start counted it */
	for (;;) {
		if (!counted && !l->ending && !fuse_loop_exiting(l->se) &&
		    l->readers > 0 && l->readers + l->serving >= l->active) {
			l->parked++;
			while (!l->ending && l->handoffs == 0)
				pthread_cond_wait(&l->park, &l->lock);
			l->parked--;
			if (!l->ending) {
				l->handoffs--;	/* the waker counted it */
				counted = true;
			}
		}
		/* After the end, one thread reads on while requests hold it
		 * (see the top).
		 */
		if (l->ending ||
		    (fuse_loop_exiting(l->se) &&
		     (l->holding == 0 || l->gone ||
		      l->readers > (counted ? 1u : 0u)))) {
			if (counted)
				l->readers--;
			break;
		}
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
			l->gone = true;
			fuse_session_exit(l->se);
			break;
		}
		/* Leave a reader behind if fewer than active threads are
		 * busy, or if this request may block (the timed valve
		 * covers the others).
		 */
		if (l->readers == 0 && !l->ending &&
		    (l->serving + 1 < l->active || l->slow > 0 ||
		     (w->buf.flags & FUSE_BUF_IS_FD) ||
		     (size_t)res < sizeof(struct fuse_in_header) ||
		     !l->quick(w->buf.mem)))
			add_reader(l);
		/* A large request read by splice (FUSE_BUF_IS_FD) is a
		 * write: quick.
		 */
		w->holding = !l->draining ||
			     (!(w->buf.flags & FUSE_BUF_IS_FD) &&
			      ((size_t)res < sizeof(struct fuse_in_header) ||
			       !l->quick(w->buf.mem)));
		if (w->holding)
			l->holding++;
		l->serving++;
		pthread_mutex_unlock(&l->lock);
		t0 = now_ns();
		fuse_session_process_buf(l->se, &w->buf);
		t1 = now_ns();
		pthread_mutex_lock(&l->lock);
		l->serving--;
		l->served++;
		if (w->holding)
			l->holding--;
		if (t1 - t0 > SLOW_NS)
			l->slow = SLOW_HOLD;
		else if (l->slow > 0)
			l->slow--;
	}
	pthread_mutex_unlock(&l->lock);
	sem_post(&finish);
	pthread_cleanup_pop(1);
	return NULL;
}

unsigned
fuse_loop_default_active(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 2)
		n = 2;
	if (n > 8)
		n = 8;
	return (unsigned)n;
}

/* Waits for the end.  Meanwhile, the valve: a tick without a reader in
 * the kernel and without a request completed adds a reader.  Ticks are
 * VALVE_BUSY_US apart while requests are served, VALVE_IDLE_MS when
 * none is (then the first of a stall can be late by that much).
 */
static void
wait_end(struct fuse_loop *l)
{
	unsigned long seen = (unsigned long)-1;
	struct timespec ts;
	long ns = VALVE_IDLE_MS * 1000000L;

	while (!fuse_loop_exiting(l->se)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += ns;
		while (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (sem_clockwait(&finish, CLOCK_MONOTONIC, &ts) == 0 ||
		    errno != ETIMEDOUT)
			continue;
		pthread_mutex_lock(&l->lock);
		if (l->readers == 0 && l->served == seen && !l->ending)
			add_reader(l);
		seen = l->served;
		ns = l->serving > 0 || l->readers == 0 ?
			     VALVE_BUSY_US * 1000L :
			     VALVE_IDLE_MS * 1000000L;
		pthread_mutex_unlock(&l->lock);
	}
}

/* After the end: keeps a reader while requests hold it (see the top). */
static void
drain(struct fuse_loop *l)
{
	struct timespec ts;
	bool told = false;

	pthread_mutex_lock(&l->lock);
	l->draining = true;
	while (l->holding > 0 && !l->gone) {
		if (!told)
			log_info("fuse: the session ended with %u request%s in "
				 "progress: reading on until %s answered",
				 l->holding, l->holding == 1 ? "" : "s",
				 l->holding == 1 ? "it is" : "they are");
		told = true;
		if (l->readers == 0)
			add_reader(l);
		pthread_mutex_unlock(&l->lock);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += VALVE_BUSY_US * 1000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		sem_clockwait(&finish, CLOCK_MONOTONIC, &ts);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
}

int
fuse_loop_run(struct fuse_session *se, unsigned max_threads,
	      unsigned active, bool (*quick)(const void *in))
{
	struct fuse_loop l;
	struct fuse_worker *w, *next;
	int err = 0;

	memset(&l, 0, sizeof l);
	l.se = se;
	l.quick = quick;
	l.max_threads = max_threads > 0 ? max_threads : 1;
	l.active = active > 0 ? active : 1;
	if (!atomic_load(&finish_ready)) {
		if (sem_init(&finish, 0, 0) == -1)
			return -1;
		atomic_store(&finish_ready, true);
	}
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.park, NULL);

	pthread_mutex_lock(&l.lock);
	if (worker_start(&l) == -1)
		err = errno;
	pthread_mutex_unlock(&l.lock);
	if (err == 0)
		wait_end(&l);
	if (err == 0)
		drain(&l);

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
	fuse_session_exit(se);
	pthread_cond_destroy(&l.park);
	pthread_mutex_destroy(&l.lock);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}
