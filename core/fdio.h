/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FDIO_H
#define COLOFS_FDIO_H

#include <stddef.h>
#include <stdint.h>

/* Whole transfers, retrying short I/O and EINTR.  0, or -1 with errno
 * (EIO at EOF).
 */
int full_pread(int fd, void *buf, size_t len, uint64_t off);
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Punch a hole, else ZERO_RANGE, else write zeros. */
int fd_zero_range(int fd, uint64_t off, uint64_t len);

#endif
