#!/usr/bin/env bash
# Large reads of the view from the image are spliced into the reply, with
# no buffer per request: reading the view again faults in no memory in the
# daemon.  (A reply of 1 MiB and its header do not fit the 1 MiB pipe that
# a process without CAP_SYS_RESOURCE may have, /proc/sys/fs/pipe-max-size;
# libfuse then copies each reply through a freshly mapped buffer: 256 page
# faults per MiB read.  max_read is 512 KiB for that reason.)
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 64M aa
write_config
start_colofs
pid=$(colofs_pid)
[ -n "$pid" ] || fail "no colofs pid"
# The minor faults of the whole process, its threads included.
minflt() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $8}'; }

# A first pass starts the worker threads and fills the image's page cache.
dd if="$MNT/vda" of=/dev/null bs=1M status=none || fail "first read"
f0=$(minflt)
for i in 1 2; do
	dd if="$MNT/vda" of=/dev/null bs=1M status=none || fail "read $i"
done
f1=$(minflt)
faults=$((f1 - f0))
echo "page faults for 128 MiB read: $faults"
# 256 per MiB (32768) when each reply goes through a fresh buffer.
[ "$faults" -lt 2048 ] || fail "$faults page faults reading 128 MiB"
ok "reading the view twice faults in $faults pages (128 MiB)"
