/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_IMAGE_H
#define COLOFS_IMAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The secondary disk S.  Formats fill one function table:
 *   raw:   pread/pwrite on the file;
 *   qcow2: read through libqcow (read-only); every write goes to an
 *          overlay store in the buffer directory that survives a clean
 *          restart (image-qcow2.c).
 * Every operation is thread-safe.
 */
enum image_format {
	IMAGE_FORMAT_AUTO,	/* probe by magic: only if the config asks */
	IMAGE_FORMAT_RAW,
	IMAGE_FORMAT_QCOW2,
};
const char *image_format_name(enum image_format f);	/* aborts if unknown */
/* "raw", "qcow2" or "auto": 0, or -1 with errno = EINVAL. */
int image_format_parse(const char *s, enum image_format *out);

struct image;
struct writebehind;

struct image_ops {
	const char *name;
	/* Whole transfers within the image: 0, or -1 with errno. */
	int (*pread)(struct image *img, void *buf, size_t len, uint64_t off);
	int (*pwrite)(struct image *img, const void *buf, size_t len,
		      uint64_t off);
	/* pwrite from pages lent to the kernel (full_pwrite_lent, fdio.h):
	 * for a buffer's memory, which the kernel may never have read
	 * through this process's addresses.  NULL: use pwrite.
	 */
	int (*pwrite_lent)(struct image *img, const void *buf, size_t len,
			   uint64_t off);
	/* Afterwards [off, off+len) reads as zeros.  punch: holes where
	 * possible (PUNCH_HOLE, a trim); else the range stays allocated where
	 * it was (ZERO_RANGE, WRITE_ZEROES with NO_HOLE).
	 */
	int (*zero)(struct image *img, uint64_t off, uint64_t len, bool punch);
	int (*flush)(struct image *img);		/* durable */
	uint64_t (*overlay_bytes)(struct image *img);	/* NULL: none */
	void (*close)(struct image *img);
};

struct image {
	const struct image_ops *ops;
	char *path;
	uint64_t size;
	int fd;			/* the raw data, or -1 (qcow2) */
	int lock_fd;		/* holds the ownership locks, or -1 */
	atomic_bool sync_failed;	/* fdio_datasync's: a sync failed */
	struct writebehind *wb;	/* raw: image_write_behind's, or NULL */
	void *priv;
};

/* Opens path.  overlay_dir and name are used by qcow2 for its overlay
 * ("DIR/NAME.overlay"); raw ignores them.  Checks that the size is a
 * multiple of 512.  Takes QEMU's ownership locks on the file first
 * (ofdlock.h), held until image_close: EAGAIN if another process (a
 * colofs, a QEMU writer) holds it.  NULL with errno, after logging a
 * clear message.
 */
struct image *image_open(const char *path, enum image_format fmt,
			 const char *overlay_dir, const char *name);
void image_close(struct image *img);		/* NULL is a no-op */

/* Write-behind (writebehind.h): from now on, a raw image starts the
 * writeback of its written pages after every `every` bytes, from a thread,
 * so that a flush has less to write.  0: off.  Other formats ignore it.
 * Call it once, before the image's I/O starts.  0, or -1 with errno.
 */
int image_write_behind(struct image *img, uint64_t every);

/* Whether image_open could own path now: takes QEMU's locks as it would
 * and lets them go.  0, or -1 with the holder logged (or no file).
 */
int image_check_owner(const char *path);

/* Probes the format from the first bytes: 0 and *out, or -1 + errno. */
int image_probe(const char *path, enum image_format *out);

/* The qcow2 opener (image-qcow2.c), called by image_open. */
struct image *image_qcow2_open(const char *path, const char *overlay_dir,
			       const char *name);

/* A raw image over an already open fd (tests; takes ownership). */
struct image *image_raw_from_fd(int fd, const char *path);

#endif
