/* SPDX-License-Identifier: MIT */
/* Unit tests of the NBD protocol code (fs/nbd/nbd-proto.c), driven from memory:
 * the client's bytes are a script, the server's are captured.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd-proto.h"

struct memio {
	uint8_t in[1 << 16];
	size_t inlen, inpos;
	uint8_t out[1 << 16];
	size_t outlen;
};

static int
mem_recv(void *ctx, void *buf, size_t len)
{
	struct memio *m = ctx;

	if (len > m->inlen - m->inpos) {
		m->inpos = m->inlen;
		errno = ECONNRESET;
		return -1;
	}
	memcpy(buf, m->in + m->inpos, len);
	m->inpos += len;
	return 0;
}

static int
mem_send(void *ctx, const struct iovec *iov, int n)
{
	struct memio *m = ctx;

	for (int i = 0; i < n; i++) {
		cr_assert_leq(m->outlen + iov[i].iov_len, sizeof m->out);
		memcpy(m->out + m->outlen, iov[i].iov_base, iov[i].iov_len);
		m->outlen += iov[i].iov_len;
	}
	return 0;
}

static void
in_bytes(struct memio *m, const void *p, size_t n)
{
	cr_assert_leq(m->inlen + n, sizeof m->in);
	if (n)
		memcpy(m->in + m->inlen, p, n);
	m->inlen += n;
}

static void
in32(struct memio *m, uint32_t v)
{
	v = htobe32(v);
	in_bytes(m, &v, 4);
}

static void
in16(struct memio *m, uint16_t v)
{
	v = htobe16(v);
	in_bytes(m, &v, 2);
}

static void
in64(struct memio *m, uint64_t v)
{
	v = htobe64(v);
	in_bytes(m, &v, 8);
}

static void
in_opt(struct memio *m, uint32_t opt, const void *data,
       uint32_t len)
{
	in64(m, NBD_OPTS_MAGIC);
	in32(m, opt);
	in32(m, len);
	in_bytes(m, data, len);
}

static void
in_go(struct memio *m, uint32_t opt, const char *name)
{
	uint32_t n = (uint32_t)strlen(name);

	in64(m, NBD_OPTS_MAGIC);
	in32(m, opt);
	in32(m, 4 + n + 2 + 2);
	in32(m, n);
	in_bytes(m, name, n);
	in16(m, 1);
	in16(m, NBD_INFO_BLOCK_SIZE);
}

static const struct nbd_export_info exports[] = {
	{ .name = "vda", .description = "disk a", .size = 1 << 20,
	  .tflags = 0x16d },
	{ .name = "vdb", .description = "disk b", .size = 4096,
	  .tflags = 0x16d },
};

static int
refuse(void *opaque)
{
	(void)opaque;
	return 0;
}

static struct memio *mio;
static struct nbd_io io;
static struct nbd_handshake hs;

static void
setup(void)
{
	mio = calloc(1, sizeof *mio);
	io = (struct nbd_io){ .recv = mem_recv, .send = mem_send, .ctx = mio };
	hs = (struct nbd_handshake){ .exports = exports, .nexports = 2 };
	in32(mio, 3);	/* client flags: FIXED_NEWSTYLE | NO_ZEROES */
}

static void
teardown(void)
{
	free(mio);
}

/* Walks the option replies after the 18-byte greeting. */
struct rep {
	uint32_t opt, type, len;
	const uint8_t *data;
};

static size_t
next_rep(size_t pos, struct rep *r)
{
	cr_assert_leq(pos + 20, mio->outlen, "reply header beyond the output");
	cr_assert_eq(get64(mio->out + pos), NBD_REP_MAGIC);
	r->opt = get32(mio->out + pos + 8);
	r->type = get32(mio->out + pos + 12);
	r->len = get32(mio->out + pos + 16);
	r->data = mio->out + pos + 20;
	cr_assert_leq(pos + 20 + r->len, mio->outlen);
	return pos + 20 + r->len;
}

TestSuite(nbd_negotiate, .init = setup, .fini = teardown);
TestSuite(nbd_transmission, .init = setup, .fini = teardown);

Test(nbd_negotiate, greeting_is_fixed_newstyle_no_zeroes)
{
	nbd_negotiate(&io, &hs);
	cr_assert_geq(mio->outlen, 18);
	cr_assert_eq(get64(mio->out), NBD_INIT_MAGIC);
	cr_assert_eq(get64(mio->out + 8), NBD_OPTS_MAGIC);
	cr_assert_eq(get16(mio->out + 16), 3);
}

Test(nbd_negotiate, go_replies_export_block_size_then_ack)
{
	struct rep r;
	size_t pos = 18;
	int seen_export = 0, seen_bs = 0;

	in_go(mio, NBD_OPT_GO, "vdb");
	cr_assert_eq(nbd_negotiate(&io, &hs), 1);
	for (;;) {
		pos = next_rep(pos, &r);
		cr_assert_eq(r.opt, NBD_OPT_GO);
		if (r.type == NBD_REP_ACK)
			break;
		cr_assert_eq(r.type, NBD_REP_INFO);
		if (get16(r.data) == NBD_INFO_EXPORT) {
			cr_assert_eq(r.len, 12);
			cr_assert_eq(get64(r.data + 2), 4096);
			cr_assert_eq(get16(r.data + 10), 0x16d);
			seen_export = 1;
		} else if (get16(r.data) == NBD_INFO_BLOCK_SIZE) {
			cr_assert_eq(r.len, 14);
			cr_assert_eq(get32(r.data + 2), 1);
			cr_assert_eq(get32(r.data + 6), 4096);
			cr_assert_eq(get32(r.data + 10), 32u << 20);
			seen_bs = 1;
		}
	}
	cr_assert(seen_export && seen_bs);
	cr_assert_eq(pos, mio->outlen, "nothing after the ACK");
}

Test(nbd_negotiate, unknown_export_errors_and_session_goes_on)
{
	struct rep r;
	size_t pos = 18;

	in_go(mio, NBD_OPT_GO, "nope");
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), 0);
	pos = next_rep(pos, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_UNKNOWN);
	cr_assert_null(memmem(r.data, r.len, "nope", 4), "client name echoed");
}

Test(nbd_negotiate, unknown_option_is_unsup_and_its_data_consumed)
{
	struct rep r;
	uint8_t junk[300];

	memset(junk, 0xff, sizeof junk);
	in_opt(mio, 0x7654321, junk, sizeof junk);
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), 0);
	next_rep(18, &r);
	cr_assert_eq(r.opt, 0x7654321);
	cr_assert_eq(r.type, NBD_REP_ERR_UNSUP);
}

Test(nbd_negotiate, starttls_is_policy)
{
	struct rep r;

	in_opt(mio, NBD_OPT_STARTTLS, NULL, 0);
	nbd_negotiate(&io, &hs);
	next_rep(18, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_POLICY);
}

/* TLS: a fake starttls that marks the io as "TLS" (tests only see that
 * it ran, and when).
 */
static int starttls_calls, tls_refusals;
static size_t starttls_outlen;

static int
fake_starttls(void *opaque)
{
	(void)opaque;
	starttls_calls++;
	starttls_outlen = mio->outlen;
	return 0;
}

static int
failing_starttls(void *opaque)
{
	(void)opaque;
	starttls_calls++;
	errno = EACCES;
	return -1;
}

static void
count_refusal(void *opaque)
{
	(void)opaque;
	tls_refusals++;
}

static void
tls_required(int (*starttls)(void *))
{
	starttls_calls = tls_refusals = 0;
	hs.starttls = starttls;
	hs.tls_required = true;
	hs.tls_refused = count_refusal;
}

Test(nbd_negotiate, tls_required_refuses_options_before_starttls)
{
	static const uint32_t opts[] = {
		NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_GO, NBD_OPT_STRUCTURED_REPLY,
		0x7654321,
	};
	struct rep r;
	size_t pos = 18;

	tls_required(fake_starttls);
	for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
		if (opts[i] == NBD_OPT_INFO || opts[i] == NBD_OPT_GO)
			in_go(mio, opts[i], "vda");
		else
			in_opt(mio, opts[i], NULL, 0);
	}
	cr_assert_eq(nbd_negotiate(&io, &hs), -1, "no export before TLS");
	for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
		pos = next_rep(pos, &r);
		cr_assert_eq(r.opt, opts[i]);
		cr_assert_eq(r.type, NBD_REP_ERR_TLS_REQD,
			     "option %u: reply %#x", opts[i], r.type);
	}
	cr_assert_eq(pos, mio->outlen, "nothing but the refusals");
	cr_assert_eq(tls_refusals, 5);
	cr_assert_eq(starttls_calls, 0);
}

Test(nbd_negotiate, tls_required_export_name_closes)
{
	tls_required(fake_starttls);
	in_opt(mio, NBD_OPT_EXPORT_NAME, "vda", 3);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, EACCES);
	cr_assert_eq(mio->outlen, 18, "only the greeting went out");
	cr_assert_eq(tls_refusals, 1);
}

Test(nbd_negotiate, starttls_acks_in_plaintext_then_options_go_on)
{
	struct rep r;
	size_t pos;

	tls_required(fake_starttls);
	in_opt(mio, NBD_OPT_STARTTLS, NULL, 0);
	in_opt(mio, NBD_OPT_STARTTLS, NULL, 0);
	in_go(mio, NBD_OPT_GO, "vdb");
	cr_assert_eq(nbd_negotiate(&io, &hs), 1);
	cr_assert_eq(starttls_calls, 1);
	pos = next_rep(18, &r);
	cr_assert_eq(r.opt, NBD_OPT_STARTTLS);
	cr_assert_eq(r.type, NBD_REP_ACK);
	cr_assert_eq(starttls_outlen, pos, "the ACK went out before the handshake");
	pos = next_rep(pos, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_INVALID, "a second STARTTLS");
	next_rep(pos, &r);
	cr_assert_eq(r.type, NBD_REP_INFO, "GO answered once TLS is up");
	cr_assert_eq(tls_refusals, 0);
}

Test(nbd_negotiate, failed_handshake_closes)
{
	tls_required(failing_starttls);
	in_opt(mio, NBD_OPT_STARTTLS, NULL, 0);
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, EACCES);
	cr_assert_eq(starttls_calls, 1);
}

Test(nbd_negotiate, starttls_with_data_is_invalid)
{
	struct rep r;

	tls_required(fake_starttls);
	in_opt(mio, NBD_OPT_STARTTLS, "x", 1);
	in_opt(mio, NBD_OPT_ABORT, NULL, 0);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, ECANCELED, "ABORT is allowed before TLS");
	next_rep(18, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_INVALID);
	cr_assert_eq(starttls_calls, 0);
}

Test(nbd_negotiate, tls_optional_serves_plaintext_clients)
{
	hs.starttls = fake_starttls;
	hs.tls_required = false;
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), 0);
}

Test(nbd_negotiate, oversized_option_closes_without_reading_it)
{
	in64(mio, NBD_OPTS_MAGIC);
	in32(mio, NBD_OPT_GO);
	in32(mio, 0xffffffff);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, EPROTO);
	cr_assert_eq(mio->outlen, 18, "no reply to an oversized option");
}

Test(nbd_negotiate, truncated_option_ends_with_connreset)
{
	in64(mio, NBD_OPTS_MAGIC);
	in32(mio, NBD_OPT_GO);
	in32(mio, 100);
	in32(mio, 3);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, ECONNRESET);
}

Test(nbd_negotiate, too_many_options_close)
{
	for (int i = 0; i < NBD_MAX_OPTIONS + 5; i++)
		in_opt(mio, 0x1234, NULL, 0);
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, EPROTO);
}

Test(nbd_negotiate, go_namelen_beyond_option_is_invalid)
{
	struct rep r;

	in64(mio, NBD_OPTS_MAGIC);
	in32(mio, NBD_OPT_GO);
	in32(mio, 8);
	in32(mio, 0xffffffff);	/* namelen */
	in32(mio, 0);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	next_rep(18, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_INVALID);
}

Test(nbd_negotiate, export_name_without_no_zeroes_pads_124)
{
	mio->inlen = 0;
	in32(mio, 1);		/* FIXED_NEWSTYLE only */
	in_opt(mio, NBD_OPT_EXPORT_NAME, "vda", 3);
	cr_assert_eq(nbd_negotiate(&io, &hs), 0);
	cr_assert_eq(mio->outlen, 18 + 134);
	cr_assert_eq(get64(mio->out + 18), 1 << 20);
}

Test(nbd_negotiate, export_name_with_no_zeroes_sends_10)
{
	in_opt(mio, NBD_OPT_EXPORT_NAME, "vda", 3);
	cr_assert_eq(nbd_negotiate(&io, &hs), 0);
	cr_assert_eq(mio->outlen, 18 + 10);
}

Test(nbd_negotiate, export_name_unknown_closes)
{
	in_opt(mio, NBD_OPT_EXPORT_NAME, "zz", 2);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, ENOENT);
}

Test(nbd_negotiate, not_accepting_refuses_go_with_shutdown)
{
	struct rep r;

	hs.accepting = refuse;
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	next_rep(18, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_SHUTDOWN);
}

Test(nbd_negotiate, bad_client_flags_close)
{
	mio->inlen = 0;
	in32(mio, 0x80000001);
	cr_assert_eq(nbd_negotiate(&io, &hs), -1);
	cr_assert_eq(errno, EPROTO);
}

/* --- requests ------------------------------------------------------- */

static struct nbd_request
rq(uint16_t type, uint16_t flags, uint64_t off,
   uint32_t len)
{
	return (struct nbd_request){ .type = type, .flags = flags,
				     .offset = off, .length = len };
}

Test(nbd_request, beyond_end_read_is_einval_write_is_enospc)
{
	struct nbd_request r = rq(NBD_CMD_READ, 0, 4096, 1);

	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), NBD_EINVAL);
	r.type = NBD_CMD_WRITE;
	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), NBD_ENOSPC);
	r = rq(NBD_CMD_READ, 0, 0, 4096);
	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), 0);
}

Test(nbd_request, wrapping_offset_is_caught)
{
	struct nbd_request r = rq(NBD_CMD_READ, 0, UINT64_MAX - 511, 1024);

	cr_assert_eq(nbd_request_check(&r, 1 << 20, 0x16d), NBD_EINVAL);
	r.type = NBD_CMD_TRIM;
	cr_assert_eq(nbd_request_check(&r, 1 << 20, 0x16d), NBD_EINVAL);
}

Test(nbd_request, over_32mib_is_einval)
{
	struct nbd_request r = rq(NBD_CMD_WRITE, 0, 0, (32u << 20) + 1);

	cr_assert_eq(nbd_request_check(&r, 1ull << 30, 0x16d), NBD_EINVAL);
	/* Payload-less commands may be larger. */
	r.type = NBD_CMD_WRITE_ZEROES;
	cr_assert_eq(nbd_request_check(&r, 1ull << 30, 0x16d), 0);
}

Test(nbd_request, flags_outside_their_command_are_einval)
{
	struct nbd_request r = rq(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 1);

	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), NBD_EINVAL);
	r = rq(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA,
	       0, 1);
	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), 0);
	r = rq(NBD_CMD_READ, 0x20, 0, 1);
	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), NBD_EINVAL);
	r = rq(9, 0, 0, 0);
	cr_assert_eq(nbd_request_check(&r, 4096, 0x16d), NBD_EINVAL);
}

Test(nbd_request, errno_mapping)
{
	cr_assert_eq(nbd_errno_to_nbd(ESHUTDOWN), NBD_ESHUTDOWN);
	cr_assert_eq(nbd_errno_to_nbd(ENOSPC), NBD_ENOSPC);
	cr_assert_eq(nbd_errno_to_nbd(EROFS), NBD_EPERM);
	cr_assert_eq(nbd_errno_to_nbd(EBADF), NBD_EIO);
}

/* The transmission loop, with ops that record what reached them. */
struct rec {
	int submitted, errors, bufs;
	uint32_t last_err;
	uint8_t payload[8192];
	uint32_t payload_len;
};

static void *
rec_get(void *o, size_t len)
{
	((struct rec *)o)->bufs++;
	return malloc(len);
}

static void
rec_put(void *o, void *b)
{
	((struct rec *)o)->bufs--;
	free(b);
}

static int
rec_submit(void *o, const struct nbd_request *req, void *buf)
{
	struct rec *r = o;

	r->submitted++;
	if (buf) {
		r->bufs--;
		if (req->type == NBD_CMD_WRITE && req->length <= sizeof r->payload) {
			memcpy(r->payload, buf, req->length);
			r->payload_len = req->length;
		}
		free(buf);
	}
	return 0;
}

static int
rec_error(void *o, uint64_t cookie, uint32_t err)
{
	struct rec *r = o;

	(void)cookie;
	r->errors++;
	r->last_err = err;
	return 0;
}

static const struct nbd_session_ops rec_ops = {
	rec_get, rec_put, rec_submit, rec_error,
};

static void
in_req(struct memio *m, uint16_t type, uint64_t off, uint32_t len)
{
	in32(m, NBD_REQUEST_MAGIC);
	in16(m, 0);
	in16(m, type);
	in64(m, 42);
	in64(m, off);
	in32(m, len);
}

Test(nbd_transmission, truncated_write_is_never_submitted)
{
	struct rec r = { 0 };
	uint8_t data[1000];

	mio->inlen = 0;
	in_req(mio, NBD_CMD_WRITE, 0, 4096);
	memset(data, 0x77, sizeof data);
	in_bytes(mio, data, sizeof data);
	cr_assert_eq(nbd_transmission(&io, &exports[0], &rec_ops, &r),
		     NBD_END_EOF);
	cr_assert_eq(r.submitted, 0);
	cr_assert_eq(r.bufs, 0, "the buffer leaked");
}

Test(nbd_transmission, whole_write_is_submitted_with_payload)
{
	struct rec r = { 0 };
	uint8_t data[512];

	mio->inlen = 0;
	in_req(mio, NBD_CMD_WRITE, 512, 512);
	memset(data, 0x5a, sizeof data);
	in_bytes(mio, data, sizeof data);
	in_req(mio, NBD_CMD_DISC, 0, 0);
	cr_assert_eq(nbd_transmission(&io, &exports[0], &rec_ops, &r),
		     NBD_END_DISC);
	cr_assert_eq(r.submitted, 1);
	cr_assert_eq(r.payload_len, 512);
	cr_assert_eq(memcmp(r.payload, data, 512), 0);
}

Test(nbd_transmission, bad_magic_ends_the_session)
{
	struct rec r = { 0 };

	mio->inlen = 0;
	in32(mio, 0xdeadbeef);
	in_bytes(mio, "xxxxxxxxxxxxxxxxxxxxxxxx", 24);
	cr_assert_eq(nbd_transmission(&io, &exports[0], &rec_ops, &r),
		     NBD_END_PROTOCOL);
	cr_assert_eq(r.submitted + r.errors, 0);
}

Test(nbd_transmission, write_beyond_end_consumes_payload_then_enospc)
{
	struct rec r = { 0 };
	uint8_t data[600] = { 0 };

	mio->inlen = 0;
	in_req(mio, NBD_CMD_WRITE, 4000, 600);	/* export vdb: 4096 bytes */
	in_bytes(mio, data, sizeof data);
	in_req(mio, NBD_CMD_READ, 0, 512);
	in_req(mio, NBD_CMD_DISC, 0, 0);
	cr_assert_eq(nbd_transmission(&io, &exports[1], &rec_ops, &r),
		     NBD_END_DISC);
	cr_assert_eq(r.errors, 1);
	cr_assert_eq(r.last_err, NBD_ENOSPC);
	cr_assert_eq(r.submitted, 1, "the READ after it was framed right");
}

Test(nbd_transmission, huge_write_header_errors_and_closes)
{
	struct rec r = { 0 };

	mio->inlen = 0;
	in_req(mio, NBD_CMD_WRITE, 0, 0xffffffff);
	cr_assert_eq(nbd_transmission(&io, &exports[0], &rec_ops, &r),
		     NBD_END_PROTOCOL);
	cr_assert_eq(r.errors, 1);
	cr_assert_eq(r.last_err, NBD_EINVAL);
}

struct rec_read {
	int submitted, with_buf, bufs;
};

static void *
rr_get(void *o, size_t len)
{
	((struct rec_read *)o)->bufs++;
	return malloc(len);
}

static void
rr_put(void *o, void *b)
{
	((struct rec_read *)o)->bufs--;
	free(b);
}

static int
rr_submit(void *o, const struct nbd_request *req, void *buf)
{
	struct rec_read *r = o;

	(void)req;
	r->submitted++;
	if (buf) {
		r->with_buf++;
		r->bufs--;
		free(buf);
	}
	return 0;
}

Test(nbd_transmission, reads_get_no_buffer_when_parsed)
{
	static const struct nbd_session_ops ops = {
		rr_get, rr_put, rr_submit, rec_error,
	};
	struct rec_read r = { 0 };

	mio->inlen = 0;
	for (int i = 0; i < 100; i++)
		in_req(mio, NBD_CMD_READ, 0, 1 << 20);
	in_req(mio, NBD_CMD_DISC, 0, 0);
	cr_assert_eq(nbd_transmission(&io, &exports[0], &ops, &r),
		     NBD_END_DISC);
	cr_assert_eq(r.submitted, 100);
	cr_assert_eq(r.with_buf, 0, "a queued READ must pin no buffer");
	cr_assert_eq(r.bufs, 0);
}

/* A colofs primary presents the generation it syncs against after the
 * export's name (fs/primary-link.c): GO picks the export without it and
 * says what was presented; a plain name presents nothing; anything else
 * after the name is not an export.
 */
Test(nbd_negotiate, go_with_a_presented_generation)
{
	uint64_t gen = 7;
	struct rep r;

	hs.presented = &gen;
	in_go(mio, NBD_OPT_GO, "vda colofs-gen=0123456789abcdeX");
	in_go(mio, NBD_OPT_GO, "vdb colofs-gen=0123456789abcdef");
	cr_assert_eq(nbd_negotiate(&io, &hs), 1);
	cr_assert_eq(gen, 0x0123456789abcdefULL);
	next_rep(18, &r);
	cr_assert_eq(r.type, NBD_REP_ERR_UNKNOWN, "a malformed suffix");
}

Test(nbd_negotiate, go_with_a_plain_name_presents_nothing)
{
	uint64_t gen = 7;

	hs.presented = &gen;
	in_go(mio, NBD_OPT_GO, "vda");
	cr_assert_eq(nbd_negotiate(&io, &hs), 0);
	cr_assert_eq(gen, 0);
}
