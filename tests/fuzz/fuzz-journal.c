/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the failover journal's parser (core/journal.c):
 * journal_parse and journal_stamp_check over arbitrary bytes must never
 * crash, leak or read out of bounds, and what they accept must hold
 * together (every extent within the disk, the valid length within the
 * input, the buffers' ends within the disk).
 *
 * Checksums keep random bytes from ever parsing, so LLVMFuzzerInitialize
 * writes valid journals (made by journal_create and journal_append) into
 * the directory named by COLOFS_FUZZ_SEEDS, which tests/fuzz/run-files
 * passes as a corpus: the mutations then start from journals that parse.
 *
 * Build and run: tests/fuzz/run-files [SECONDS] [WORKDIR].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdio.h"
#include "journal.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct journal_rec recs[] = {
		{ 'A', 0, 4096 }, { 'H', 8192, 512 }, { 'A', 65536, 1 },
	};
	const char *dir = getenv("COLOFS_FUZZ_SEEDS");
	unsigned char stamp[JOURNAL_STAMP_LEN];
	struct journal *j;
	char name[32];
	int dirfd, k;
	FILE *fp;

	(void) argc;
	(void) argv;
	log_set_quiet(true);
	if (dir == NULL || (dirfd = fdio_dir_open(dir)) == -1)
		return 0;
	for (k = 0; k < 4; k++) {
		snprintf(name, sizeof name, "journal-%d", k);
		j = journal_create(dirfd, name, "vda", 1 << 20, (uint64_t) k,
				   recs, (size_t) k % 4);
		if (j == NULL)
			continue;
		if (journal_commit(j) == 0 && k >= 2) {
			journal_append(j, 'D', 1024, 100);
			journal_append(j, 'A', 4096, 4096);
		}
		journal_stamp(j, k % 2 ? 'A' : 'H', stamp);
		snprintf(name, sizeof name, "%s/stamp-%d", dir, k);
		fp = fopen(name, "w");
		if (fp) {
			fwrite(stamp, 1, 128, fp);
			fclose(fp);
		}
		journal_close(j);
	}
	close(dirfd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal_info info;
	unsigned char stamp[JOURNAL_STAMP_LEN];
	char err[512];
	size_t i;

	if (journal_parse(data, size, NULL, 0, &info, err, sizeof err) == 0) {
		if (info.valid_len > size || info.nsnap > info.nrecs ||
		    info.active_end > info.size || info.hidden_end > info.size)
			abort();
		for (i = 0; i < info.nrecs; i++)
			if (info.recs[i].len == 0 ||
			    info.recs[i].off > info.size ||
			    info.recs[i].len > info.size - info.recs[i].off)
				abort();
		/* A stamp from the rest of the input, against this journal. */
		memset(stamp, 0, sizeof stamp);
		memcpy(stamp, data, size < 128 ? size : 128);
		journal_stamp_check(&info, 'A', stamp, err, sizeof err);
		journal_info_release(&info);
	} else if (err[0] == '\0') {
		abort();		/* refused without saying why */
	}
	if (journal_parse(data, size, "vda", 1 << 20, &info, err,
			  sizeof err) == 0)
		journal_info_release(&info);
	return 0;
}
