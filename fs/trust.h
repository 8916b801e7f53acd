/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_TRUST_H
#define COLOFS_TRUST_H

#include "config.h"

/* At start and in --check-config (fs/trust.c): state_dir, buffer_dir and
 * the metrics file's directory are safe from other users, and the files
 * the config names are distinct.  0, or -1 after logging each problem.
 */
int trust_check_config(const struct config *cfg);

#endif
