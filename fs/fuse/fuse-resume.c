/* SPDX-License-Identifier: MIT */
/* Resuming a FUSE session that an earlier process negotiated.
 *
 * libfuse 3.14 cannot adopt a /dev/fuse file that has seen FUSE_INIT: a
 * new session answers EIO to every request before its own INIT.  The
 * kernel, for its part, negotiates once, and keeps max_write, the flags
 * and the protocol minor of the first reply for the life of the mount.
 * So the first worker saves the INIT exchange (the kernel's request and
 * our reply) in the holder's state memfd, and every later worker replays
 * the saved request into its fresh session: libfuse then sets itself up
 * exactly as the first did.  The reply that replay produces is caught in
 * our writev hook, never sent, and compared with the saved one: if this
 * binary negotiates differently (another max_write, other flags), it
 * refuses to serve rather than serve against settings the kernel does not
 * have.
 *
 *   read hook   INIT from the kernel: saved (first worker), or, if this
 *               session was resumed, answered here with the saved reply
 *               (a resent INIT that the dead worker had read but not
 *               answered before its reply was saved); every buffer's
 *               pages made present before its first read (prefault)
 *   writev hook our INIT reply: saved, init_valid set, then sent; the
 *               replay's reply: kept for the comparison, not sent
 *   splice_send plain splice(2), so that libfuse offers SPLICE_WRITE as it
 *               does without custom I/O (the INIT reply depends on it)
 *
 * Requests in flight.  A request the dead worker had read stays on the
 * kernel's processing list of the holder's file, its caller asleep.  On
 * Linux 6.9 and later FUSE_NOTIFY_RESEND moves them back to the pending
 * queue (with bit 63 set in unique, which we echo unchanged), and the new
 * worker serves them again: writes, flushes and reads are idempotent.  On
 * older kernels the write fails with EINVAL; those requests then wait
 * until the connection is aborted (doc/design.md, "Live restart").
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fuse-resume.h"
#include "handover.h"
#include "log.h"

/* Protocol 7.40 (Linux 6.9); Debian 12's headers stop at 7.38. */
#ifndef FUSE_NOTIFY_RESEND
#define FUSE_NOTIFY_RESEND 7
#endif
/* A made-up unique for the replayed INIT: even (a reply to an odd one is
 * read as an interrupt's) and far from the kernel's counter.  It never
 * reaches the kernel anyway.
 */
#define REPLAY_UNIQUE UINT64_C(0x00c0105e00000000)

static struct holder_state *st;
static atomic_bool resumed;	  /* the session took the saved INIT */
static atomic_ullong init_unique; /* of the INIT being saved; 0: none */
static bool replaying;
static uint8_t replay_out[HOLDER_INIT_MAX];
static size_t replay_out_len;

static size_t
gather(const struct iovec *iov, int count, uint8_t *dst, size_t size)
{
	size_t n = 0;

	for (int i = 0; i < count; i++) {
		size_t k = iov[i].iov_len;

		if (k > size - n)
			k = size - n;
		memcpy(dst + n, iov[i].iov_base, k);
		n += k;
	}
	return n;
}

static size_t
iov_total(const struct iovec *iov, int count)
{
	size_t n = 0;

	for (int i = 0; i < count; i++)
		n += iov[i].iov_len;
	return n;
}

/* Answers a resent INIT with the saved reply (its unique patched). */
static void
answer_init(int fd, uint64_t unique)
{
	uint8_t out[HOLDER_INIT_MAX];
	struct fuse_out_header oh;
	size_t len = st->init_out_len;

	memcpy(out, st->init_out, len);
	memcpy(&oh, out, sizeof oh);
	oh.unique = unique;
	memcpy(out, &oh, sizeof oh);
	if (write(fd, out, len) != (ssize_t) len)
		log_error("fuse: answering a resent INIT: %m");
	else
		log_info("fuse: a resent INIT answered with the saved reply");
}

/* The kernel copies a request into the reading thread's buffer after it
 * has taken it off the queue; if that copy faults while the worker is
 * being killed, the kernel fails the request with EIO to the VM instead of
 * keeping it for a resend.  So every page of a read buffer is made
 * present once, before its first read: the copy then never faults.
 * libfuse keeps one buffer per thread (fs/fuse/fuse-loop.c's workers keep
 * theirs for the life of the session).
 */
static void
prefault(void *buf, size_t len)
{
	static __thread void *done;
	volatile char *p = buf;

	if (buf == done)
		return;
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 0;
	if (len)
		p[len - 1] = 0;
	done = buf;
}

static ssize_t
io_read(int fd, void *buf, size_t len, void *userdata)
{
	struct fuse_in_header in;
	ssize_t n;

	(void) userdata;
	prefault(buf, len);
	for (;;) {
		n = read(fd, buf, len);
		if (n < (ssize_t) sizeof in)
			return n;
		memcpy(&in, buf, sizeof in);
		if (in.opcode != FUSE_INIT)
			return n;
		if (atomic_load(&resumed)) {
			answer_init(fd, in.unique);
			continue;
		}
		if ((size_t) n > sizeof st->init_in) {
			log_error("fuse: INIT of %zd bytes: not saved", n);
			return n;
		}
		/* Saved before libfuse answers: a worker that dies after
		 * the reply has it.
		 */
		memcpy(st->init_in, buf, (size_t) n);
		st->init_in_len = (uint32_t) n;
		atomic_store(&init_unique, in.unique);
		return n;
	}
}

static ssize_t
io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fuse_out_header oh;
	uint64_t want = atomic_load(&init_unique);

	(void) userdata;
	if (iov[0].iov_len < sizeof oh)
		return writev(fd, iov, count);
	memcpy(&oh, iov[0].iov_base, sizeof oh);
	if (replaying && oh.unique == REPLAY_UNIQUE) {
		replay_out_len = gather(iov, count, replay_out,
					sizeof replay_out);
		return (ssize_t) iov_total(iov, count);
	}
	if (want != 0 && oh.unique == want) {
		st->init_out_len = (uint32_t) gather(iov, count, st->init_out,
						     sizeof st->init_out);
		atomic_store_explicit(&st->init_valid, 1, memory_order_release);
		atomic_store(&init_unique, 0);
	}
	return writev(fd, iov, count);
}

static ssize_t
io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
	       unsigned int flags, void *userdata)
{
	(void) userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

/* Replays the saved INIT: 0 if the session answered it with the saved
 * reply's bytes, -1 after logging why not.
 */
static int
replay(struct fuse_session *se)
{
	struct fuse_in_header in;
	struct fuse_buf fb;
	uint8_t *copy;
	size_t hdr = sizeof(struct fuse_out_header);

	copy = malloc(HOLDER_INIT_MAX);
	if (!copy)
		return -1;
	memcpy(copy, st->init_in, st->init_in_len);
	memcpy(&in, copy, sizeof in);
	in.unique = REPLAY_UNIQUE;
	memcpy(copy, &in, sizeof in);
	memset(&fb, 0, sizeof fb);
	fb.mem = copy;
	fb.size = st->init_in_len;
	replaying = true;
	replay_out_len = 0;
	fuse_session_process_buf(se, &fb);
	replaying = false;
	free(copy);
	/* len and error, then (past unique) the body. */
	if (replay_out_len != st->init_out_len ||
	    memcmp(replay_out, st->init_out, 8) != 0 ||
	    memcmp(replay_out + hdr, st->init_out + hdr,
		   replay_out_len - hdr) != 0) {
		log_error("fuse: this colofs negotiates other FUSE settings "
			  "than the one that mounted (reply of %zu bytes, "
			  "saved %u): refusing to serve; restart the old "
			  "binary, or stop and mount again",
			  replay_out_len, st->init_out_len);
		return -1;
	}
	return 0;
}

int
fuse_resume(struct fuse_session *se, int fd)
{
	static const struct fuse_custom_io io = {
		.read = io_read,
		.writev = io_writev,
		.splice_send = io_splice_send,
	};
	static const struct fuse_out_header resend = {
		.len = sizeof resend,
		.error = FUSE_NOTIFY_RESEND,
		.unique = 0,
	};
	struct timespec ts;
	uint64_t died;
	int fl;

	st = handover_state();
	if (!st) {
		log_error("fuse: a /dev/fuse file was handed over without "
			  "the holder's state");
		close(fd);
		return -1;
	}
	/* O_NONBLOCK is shared by every copy of the file: the loop blocks. */
	fl = fcntl(fd, F_GETFL);
	if (fl != -1 && (fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	if (fuse_session_custom_io(se, &io, fd) != 0) {
		log_error("fuse: custom I/O refused");
		close(fd);
		return -1;
	}
	if (atomic_load_explicit(&st->init_valid, memory_order_acquire)) {
		if (replay(se) == -1)
			return -1;
		atomic_store(&resumed, true);
	}
	/* Someone read an INIT before us: a worker died.  Ask the kernel for
	 * what it had read and not answered (the INIT itself, if its reply
	 * was never saved).
	 */
	if (st->init_in_len != 0) {
		if (write(fd, &resend, sizeof resend) != sizeof resend)
			log_warn("fuse: FUSE_NOTIFY_RESEND: %m (Linux < 6.9): "
				 "requests the last worker had read stay "
				 "unanswered; see colofs(8)");
		else
			log_info("fuse: session resumed; the kernel resends "
				 "what the last worker had read");
		died = atomic_load(&st->died_ns);
		if (died) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			atomic_store(&st->last_restart_ms,
				     ((uint64_t) ts.tv_sec * 1000000000u +
				      (uint64_t) ts.tv_nsec - died) /
					     1000000u);
		}
	}
	return 0;
}
