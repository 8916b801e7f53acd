/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_TEST_FAULTY_H
#define COLOFS_TEST_FAULTY_H

#include <stdatomic.h>
#include <stdbool.h>

#include "image.h"
#include "store.h"

/* Fault switches, set by a test and read by the faulty backends.  Each
 * flag makes every operation of that kind fail with EIO while it is set.
 */
struct faults {
	atomic_bool image_read, image_write, image_flush;
	atomic_bool store_create, store_read, store_write;
	/* When > 0, counts image writes down; the one that reaches 0 and all
	 * later ones fail (to fail in the middle of a commit).
	 */
	atomic_int image_write_countdown;
	/* fsyncs of a directory (core/fdio.c) to fail with EIO: the next
	 * dir_fsync of them; < 0: every one.
	 */
	atomic_int dir_fsync;
	/* Directory fsyncs that pass before dir_fsync's start failing. */
	atomic_int dir_fsync_skip;
	/* journal_parse's allocation of its records fails (ENOMEM). */
	atomic_bool journal_alloc;
	/* Called at each image flush, before it (NULL: none); set while no
	 * I/O runs.  To check what is on disk when S is synced.
	 */
	void (*image_flush_hook)(void);
};

extern struct faults faults;

/* A raw image in a temp file, wrapped so that faults apply. */
struct image *faulty_image(uint64_t size, int fill);
/* A memory store factory whose stores obey the faults. */
struct store_factory faulty_store_factory(void);

#endif
