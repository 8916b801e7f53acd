/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the NBD negotiation and request loop (nbd/nbd-proto.c)
 * driven from memory.
 *
 * Input: byte 0 chooses whether the server accepts primaries (bit 0),
 * offers TLS (bit 1), requires it (bit 2; with bit 1) and whether the
 * "handshake" fails (bit 3); the rest is what the client sends, from the
 * client flags on.  STARTTLS here switches nothing on the wire (the bytes
 * after it stay plaintext), so the fuzzer reaches the options after TLS;
 * the invariants: no export is chosen and no option other than STARTTLS
 * and ABORT is answered (but refused) before TLS when it is required.  The server's
 * bytes go to a sink that checks they are well framed enough to count.
 * Valid requests run against two in-memory disks, so a request that got
 * past validation with a bad range or length shows up as an ASan error.
 *
 * Build and run: tests/fuzz/run [SECONDS].
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd-proto.h"

#define DISK0 (1u << 20)
#define DISK1 3u
#define DISK2 4096u

static uint8_t disk0[DISK0], disk1[DISK1], disk2[DISK2];

static const struct nbd_export_info exports[] = {
	{ .name = "vda", .description = "disk a", .size = DISK0,
	  .tflags = 0x16d },
	{ .name = "odd", .description = "disk b", .size = DISK1,
	  .tflags = 0x16d },
	/* read-only, no FLUSH/FUA/TRIM/ZERO: the refusal paths */
	{ .name = "ro", .description = NULL, .size = DISK2, .tflags = 0x3 },
};

struct fz {
	const uint8_t *in;
	size_t len, pos;
	size_t out;		/* bytes the server sent */
	int bufs;		/* outstanding get_buf buffers */
	int idx;		/* the export in transmission */
	int accept;
	int tls_fail;		/* the handshake fails */
	int tls_up;		/* starttls succeeded */
	int starttls_calls;
	int refusals;		/* options refused with TLS_REQD */
};

static int
fz_starttls(void *opaque)
{
	struct fz *f = opaque;

	assert(!f->tls_up);	/* never twice */
	f->starttls_calls++;
	if (f->tls_fail) {
		errno = EACCES;
		return -1;
	}
	f->tls_up = 1;
	return 0;
}

static void
fz_tls_refused(void *opaque)
{
	struct fz *f = opaque;

	assert(!f->tls_up);	/* TLS_REQD never once TLS is up */
	f->refusals++;
}

static int
fz_recv(void *ctx, void *buf, size_t len)
{
	struct fz *f = ctx;

	if (len > f->len - f->pos) {
		f->pos = f->len;
		errno = ECONNRESET;
		return -1;
	}
	memcpy(buf, f->in + f->pos, len);
	f->pos += len;
	return 0;
}

static int
fz_send(void *ctx, const struct iovec *iov, int n)
{
	struct fz *f = ctx;

	for (int i = 0; i < n; i++) {
		/* Touch every byte: ASan catches replies built from bad memory. */
		volatile uint8_t sum = 0;
		const uint8_t *p = iov[i].iov_base;

		for (size_t k = 0; k < iov[i].iov_len; k++)
			sum ^= p[k];
		(void)sum;
		f->out += iov[i].iov_len;
	}
	return 0;
}

static int
fz_accepting(void *opaque)
{
	return ((struct fz *)opaque)->accept;
}

static void *
fz_get_buf(void *opaque, size_t len)
{
	struct fz *f = opaque;

	assert(len > 0 && len <= NBD_MAX_PAYLOAD);
	f->bufs++;
	return malloc(len);
}

static void
fz_put_buf(void *opaque, void *buf)
{
	struct fz *f = opaque;

	f->bufs--;
	free(buf);
}

static int
fz_submit(void *opaque, const struct nbd_request *req, void *buf)
{
	struct fz *f = opaque;
	uint8_t *disk = f->idx == 0 ? disk0 : f->idx == 1 ? disk1 : disk2;
	uint64_t size = exports[f->idx].size;
	uint8_t rep[NBD_REPLY_SIZE];

	/* Whatever was submitted passed validation: it must be in range. */
	assert(req->type != NBD_CMD_DISC);
	if (exports[f->idx].tflags & NBD_FLAG_READ_ONLY)
		assert(req->type == NBD_CMD_READ);
	if (req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE ||
	    req->type == NBD_CMD_TRIM || req->type == NBD_CMD_WRITE_ZEROES)
		assert(req->offset <= size && req->length <= size - req->offset);
	switch (req->type) {
	case NBD_CMD_READ:
		/* No buffer at parse time: the server takes it at execution. */
		assert(buf == NULL);
		break;
	case NBD_CMD_WRITE:
		assert((buf != NULL) == (req->length > 0));
		if (buf)
			memcpy(disk + req->offset, buf, req->length);
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		assert(buf == NULL);
		memset(disk + req->offset, 0, req->length);
		break;
	case NBD_CMD_FLUSH:
		assert(buf == NULL);
		break;
	default:
		abort();	/* validation let an unknown command through */
	}
	nbd_reply_encode(rep, req->cookie, 0);
	f->out += sizeof(rep);
	if (buf) {
		f->bufs--;
		free(buf);
	}
	return 0;
}

static int
fz_reply_error(void *opaque, uint64_t cookie, uint32_t err)
{
	struct fz *f = opaque;

	(void)cookie;
	assert(err != 0);
	f->out += NBD_REPLY_SIZE;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct nbd_session_ops ops = {
		fz_get_buf, fz_put_buf, fz_submit, fz_reply_error,
	};
	struct fz f = { 0 };
	struct nbd_io io = { .recv = fz_recv, .send = fz_send, .ctx = &f };
	struct nbd_handshake hs = {
		.exports = exports, .nexports = 3,
		.accepting = fz_accepting, .opaque = &f,
	};

	if (size < 1)
		return 0;
	f.accept = data[0] & 1;
	if (data[0] & 2) {
		hs.starttls = fz_starttls;
		hs.tls_required = data[0] & 4;
		hs.tls_refused = fz_tls_refused;
	}
	f.tls_fail = data[0] & 8;
	f.in = data + 1;
	f.len = size - 1;
	f.idx = nbd_negotiate(&io, &hs);
	if (!(data[0] & 2))
		assert(f.starttls_calls == 0);
	if (f.idx >= 0) {
		assert(f.accept);
		if (hs.tls_required)
			assert(f.tls_up);
		assert(f.idx < 3);
		nbd_transmission(&io, &exports[f.idx], &ops, &f);
	}
	assert(f.bufs == 0);
	assert(f.pos <= f.len);
	return 0;
}
