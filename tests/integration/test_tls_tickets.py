"""pop3d TLS session-ticket keys and the master's secrets (issue 13, item
11): the master draws the ticket keys, rotates them every
tls-ticket-key-lifetime and sends them to every front end; the previous key
still opens tickets (and the ticket is renewed), the one before is gone.
And the master, which holds them, is not dumpable.

The real authd and pop3d on 127.0.0.1; Python's ssl client with session
resumption (SSLSocket.session, session_reused), TLS 1.3 and TLS 1.2."""

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys

import pytest

from authdlib import wait_until
from conftest import BUILD, sanitizer_env
from pop3lib import IS_ROOT, Client, Pop3d
# the pop3d suite's fixtures, and the TLS suite's test CA
from test_pop3d import mailroot, world  # noqa: F401
from test_tls import pki, tls_keys, tls_port  # noqa: F401

ROTATED = "TLS session-ticket keys rotated"
APPLIED = "front end: new TLS session-ticket keys"
HANDSHAKE = re.compile(r"^pop3d\[(\d+)\]: debug: TLS: rip=127\.0\.0\.1 (\S+)( resumed)?$", re.M)


def contexts(pki):
    """Client contexts for TLS 1.3 and for TLS 1.2."""
    c13 = pki.context()
    c13.minimum_version = ssl.TLSVersion.TLSv1_3
    c12 = pki.context()
    c12.maximum_version = ssl.TLSVersion.TLSv1_2
    return {"1.3": c13, "1.2": c12}


class Conn:
    """A POP3S connection past its greeting: sock, session (the ticket the
    server sent, read with the greeting), reused, and pid: the front end
    that did the handshake (its log line)."""

    def __init__(self, p, ctx, session=None):
        before = len(HANDSHAKE.findall(p.log_text()))
        s = socket.create_connection(("127.0.0.1", tls_port(p)), timeout=10)
        self.sock = ctx.wrap_socket(s, server_hostname="localhost", session=session)
        buf = b""
        while not buf.endswith(b"\r\n"):        # the greeting; tickets come first
            d = self.sock.recv(4096)
            assert d, "connection closed before the greeting"
            buf += d
        assert buf.startswith(b"+OK")
        self.session = self.sock.session
        self.reused = self.sock.session_reused
        # the front end logs the handshake before it greets
        lines = HANDSHAKE.findall(p.log_text())
        assert len(lines) == before + 1, lines[before:]
        pid, _, resumed = lines[before]
        self.pid = int(pid)
        assert bool(resumed) == self.reused

    def close(self):
        self.sock.close()


def rotations(p):
    return p.log_text().count(ROTATED)


def wait_rotations(p, n, nfe=2):
    """Until the master has rotated n times and every front end has the
    keys of the last rotation."""
    wait_until(lambda: rotations(p) >= n and p.log_text().count(APPLIED) >= nfe * n, 15,
               "%d key rotations seen by %d front ends" % (n, nfe))
    return rotations(p)


def test_ticket_keys_rotate_and_are_shared(world, pki):
    p = world(pop3d_keys=tls_keys(pki, tls_ticket_key_lifetime="2s"))
    ctxs = contexts(pki)

    # Phase 0: a ticket of each version, all under one key (started again
    # if a rotation comes in between); each resumes on the OTHER front end
    # too: held connections make the master pick the idler one.
    for attempt in range(5):
        r = wait_rotations(p, rotations(p))
        held, tickets = [], {}
        try:
            for v, ctx in ctxs.items():
                a = Conn(p, ctx)
                held.append(a)
                assert not a.reused
                tickets[v] = a.session
                for i in range(4):
                    b = Conn(p, ctx, session=a.session)
                    held.append(b)
                    assert b.reused, "TLS %s: ticket refused within its key's lifetime" % v
                    if b.pid != a.pid:
                        break
                else:
                    raise AssertionError("TLS %s: every resumption on front end %d" % (v, a.pid))
        finally:
            for c in held:
                c.close()
        if rotations(p) == r:
            break
    else:
        raise AssertionError("no key period long enough to take the tickets")

    # Phase 1: one rotation later the old key still opens them, and the
    # resumed connection gets a new ticket under the current key.
    wait_rotations(p, r + 1)
    renewed = {}
    for v, ctx in ctxs.items():
        c = Conn(p, ctx, session=tickets[v])
        assert c.reused, "TLS %s: ticket refused after one rotation" % v
        renewed[v] = c.session
        c.close()
    assert rotations(p) == r + 1, "phase 1 took longer than a key lifetime"

    # Phase 2: two rotations later the first tickets are refused (a full
    # handshake, which works), the renewed ones still resume.
    wait_rotations(p, r + 2)
    for v, ctx in ctxs.items():
        c = Conn(p, ctx, session=tickets[v])
        assert not c.reused, "TLS %s: ticket accepted after its key was dropped" % v
        c.close()
        c = Conn(p, ctx, session=renewed[v])
        assert c.reused, "TLS %s: renewed ticket refused" % v
        c.close()


def test_ticket_key_lifetime_is_checked(world, pki):
    """The key is checked like every duration: pop3d -t refuses what a
    start would refuse."""
    for bad in ("0s", "500ms", "2d", "soon"):
        p = world(pop3d_keys=tls_keys(pki, tls_ticket_key_lifetime=bad), start=False)
        r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", p.conf],
                           capture_output=True, text=True, timeout=30, env=sanitizer_env())
        assert r.returncode != 0, bad
        assert "tls-ticket-key-lifetime" in r.stderr, r.stderr


# ---- the master is not dumpable ---------------------------------------------------------

SETPRIV = shutil.which("setpriv")
NO_PTRACE = [SETPRIV, "--bounding-set=-sys_ptrace"] if SETPRIV else []


class NoPtracePop3d(Pop3d):
    """pop3d started (as root) without CAP_SYS_PTRACE in its capability
    bounding set, so that another root process without it may read the
    master's memory exactly when the master is dumpable."""

    prefix = NO_PTRACE


PROBE = "import sys; open('/proc/%s/mem' % sys.argv[1], 'rb').close()"


def readable_without_ptrace(pid):
    """True if a root process lacking CAP_SYS_PTRACE may open pid's
    /proc/PID/mem (the kernel's ptrace access check: yes for a dumpable
    process of the same uid and no more capabilities, no for a
    non-dumpable one)."""
    r = subprocess.run(NO_PTRACE + [sys.executable, "-c", PROBE, str(pid)],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        assert b"Permission denied" in r.stderr, r.stderr
    return r.returncode == 0


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="the master makes itself non-dumpable only as root")
@pytest.mark.skipif(os.environ.get("SANITIZER") == "address",
                    reason="under ASan the processes stay dumpable (LeakSanitizer ptraces)")
@pytest.mark.skipif(SETPRIV is None, reason="needs setpriv (util-linux)")
def test_master_is_not_dumpable(authd_factory, tmp_path, pki):
    # the check itself: a dumpable root process started the same way is
    # readable
    control = subprocess.Popen(NO_PTRACE + ["sleep", "60"])
    try:
        wait_until(lambda: open("/proc/%d/comm" % control.pid).read().strip() == "sleep",
                   10, "sleep started")
        assert readable_without_ptrace(control.pid)
    finally:
        control.kill()
        control.wait()
    a = authd_factory([("pw", {"type": "passwd-file", "path": "/dev/null"})])
    p = NoPtracePop3d(a, tmp_path, tls_keys(pki))
    p.start()
    try:
        assert not readable_without_ptrace(p.proc.pid), "the master is dumpable"
    finally:
        p.stop()
