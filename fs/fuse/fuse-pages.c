/* SPDX-License-Identifier: MIT */
/* Replying to a read with this process's memory by reference.
 *
 * libfuse sends a memory reply by copying it: writev to /dev/fuse, or
 * (3.14, splice wanted) write into its pipe and splice the pipe on.
 * Either way the kernel reads the bytes through this process's user
 * addresses, and on a VM whose hypervisor fills the kernel's view of
 * user pages on first use (shadow paging, e.g. PVM) the first such read
 * of a page written from user space costs about 14 times a warm one: a
 * cold read of the 128 MiB a view_write left in the active buffer went at
 * 450-520 MiB/s, the next read of it at 2.5 GB/s (doc/performance.md).
 *
 * Instead the bytes are vmspliced into a pipe of the calling thread
 * (the pipe takes references to the pages, copying nothing) and handed
 * to fuse_reply_data as an fd buffer: libfuse splices that pipe into its
 * own and on into /dev/fuse, where the kernel copies each page once,
 * through its own mapping, into the reader's pages.  One copy instead of
 * two, and none through a user address.
 *
 * The pages must not change until the reply is sent: the caller holds
 * the range lock across fuse_reply_pages, as for any reply in place, and
 * fuse_reply_data has copied every byte out of the pipe by the time it
 * returns.  A pipe that still holds bytes afterwards (a reply that
 * failed half way) is closed, never reused: the next reply must not
 * carry them.
 *
 * Each worker thread gets its pipe at its first such reply, sized to hold
 * a whole reply (a page of slack: the memory need not start on a page);
 * the thread's exit closes it.  Where that size is refused
 * (pipe-user-pages-soft reached, or pipe-max-size below it), or the
 * reply is under two pages (libfuse would not splice it), the caller
 * replies from memory as before.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse-pages.h"

struct gift_pipe {
	int fd[2];
	size_t size;
};

static pthread_key_t pipe_key;
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;
static bool pipe_key_ok;

static void
pipe_free(void *arg)
{
	struct gift_pipe *p = arg;

	if (p == NULL)
		return;
	close(p->fd[0]);
	close(p->fd[1]);
	free(p);
}

static void
pipe_key_init(void)
{
	pipe_key_ok = pthread_key_create(&pipe_key, pipe_free) == 0;
}

/* This thread's pipe, able to hold len bytes from anywhere in a page,
 * or NULL.
 */
static struct gift_pipe *
pipe_get(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t need = (len + page - 1) / page * page + page;
	struct gift_pipe *p;
	int sz;

	pthread_once(&pipe_once, pipe_key_init);
	if (!pipe_key_ok)
		return NULL;
	p = pthread_getspecific(pipe_key);
	if (p == NULL) {
		p = calloc(1, sizeof *p);
		if (p == NULL)
			return NULL;
		if (pipe2(p->fd, O_CLOEXEC) == -1) {
			free(p);
			return NULL;
		}
		if (pthread_setspecific(pipe_key, p) != 0) {
			pipe_free(p);
			return NULL;
		}
	}
	if (p->size < need) {
		sz = fcntl(p->fd[0], F_SETPIPE_SZ, (int)need);
		if (sz == -1)
			return NULL;
		p->size = (size_t)sz;
	}
	return p;
}

/* Closes this thread's pipe (the next reply makes a fresh one). */
static void
pipe_drop(struct gift_pipe *p)
{
	pthread_setspecific(pipe_key, NULL);
	pipe_free(p);
}

bool
fuse_reply_pages(fuse_req_t req, const void *mem, size_t len)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
	struct iovec iov = { (void *)mem, len };
	struct gift_pipe *p;
	ssize_t n;
	int left = 0;

	if (len < 2 * (size_t)sysconf(_SC_PAGESIZE))
		return false;
	p = pipe_get(len);
	if (p == NULL)
		return false;
	n = vmsplice(p->fd[1], &iov, 1, SPLICE_F_NONBLOCK);
	if (n != (ssize_t)len) {
		/* Nothing sent yet: empty the pipe, the caller copies. */
		pipe_drop(p);
		return false;
	}
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_RETRY;
	bv.buf[0].fd = p->fd[0];
	fuse_reply_data(req, &bv, 0);
	if (ioctl(p->fd[0], FIONREAD, &left) == -1 || left != 0)
		pipe_drop(p);
	return true;
}
