/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_OFDLOCK_H
#define COLOFS_OFDLOCK_H

/* One owner per file: open file description (OFD) byte-range locks, as
 * QEMU takes them on every image it opens (ofdlock.c).  They belong to the
 * open file, not the process: closing the fd (or exiting) drops them, and
 * closing another fd of the same file does not.
 */

/* Takes QEMU's file-posix locks on fd (an image opened for reading) as a
 * writer that lets others read but neither write nor resize: the same
 * bytes a running VM's disk holds, so QEMU (qemu-io, qemu-img,
 * qemu-system) refuses to write an image colofs serves, and colofs
 * refuses one that QEMU writes.  path names the file in the message.
 * 0; or -1 with errno (EAGAIN: someone else holds it; the message, logged,
 * names the holder's pid and command line when /proc shows them) and
 * nothing held.
 */
int ofdlock_image(int fd, const char *path);

/* Takes an exclusive lock on the whole of fd (opened read-write): the
 * state files' instance lock.  0, or -1 with errno as above.
 */
int ofdlock_exclusive(int fd, const char *path);

#endif
