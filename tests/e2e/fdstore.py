# SPDX-License-Identifier: MIT
# fdstore.py SOCKET DIR COMMAND...: stands in for systemd's fd store, for
# the live-restart tests on machines where systemd is not PID 1.  It
# binds SOCKET as $NOTIFY_SOCKET, starts COMMAND (which daemonizes, as
# Type=forking), keeps every fd sent with FDSTORE=1 under its FDNAME and
# logs "stored NAME" to DIR/fdstore.log.  When DIR/restart appears it is
# removed and COMMAND is started again with the stored fds as systemd
# passes them: from fd 3 on, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES.
# Ends when DIR/stop appears.
import array, os, select, socket, sys

path, d, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
store = {}
log = open(os.path.join(d, "fdstore.log"), "a", buffering=1)


def start():
    names = list(store)
    pid = os.fork()
    if pid == 0:
        high = [os.dup(store[n]) for n in names]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)
        env = dict(os.environ, NOTIFY_SOCKET=path)
        if names:
            env.update(LISTEN_FDS=str(len(names)), LISTEN_PID=str(os.getpid()),
                       LISTEN_FDNAMES=":".join(names))
        os.execve(cmd[0], cmd, env)
    _, st = os.waitpid(pid, 0)
    log.write("started %s exit %d\n" % (",".join(names) or "-",
                                         os.waitstatus_to_exitcode(st)))


start()
while not os.path.exists(os.path.join(d, "stop")):
    if os.path.exists(os.path.join(d, "restart")):
        os.unlink(os.path.join(d, "restart"))
        start()
    r, _, _ = select.select([s], [], [], 0.05)
    if not r:
        continue
    msg, fds, _, _ = socket.recv_fds(s, 4096, 8)
    fields = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
    if fields.get("FDSTORE") == "1" and fds:
        name = fields.get("FDNAME", "stored")
        if name in store:
            os.close(store[name])
        store[name] = fds[0]
        for fd in fds[1:]:
            os.close(fd)
        log.write("stored %s\n" % name)
    else:
        for fd in fds:
            os.close(fd)
