/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FUSE_PAGES_H
#define COLOFS_FUSE_PAGES_H

#include <stdbool.h>
#include <stddef.h>

struct fuse_req;

/* Replies to req with the len bytes at mem, handed to the kernel by
 * reference (vmsplice; fs/fuse/fuse-pages.c says why).  The bytes must
 * not change until it returns.  false, having replied nothing, when it
 * cannot (under two pages, no pipe of the size): reply by copying then.
 */
bool fuse_reply_pages(struct fuse_req *req, const void *mem, size_t len);

#endif
