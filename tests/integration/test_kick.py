"""authctl who / kick / flush --kick on one host (issue 17): the real
authd and pop3d on 127.0.0.1, real POP3 sessions, and authd's master
socket spoken to by hand where a misbehaving pop3d master is needed.
The cluster-wide kick is in test_cluster.py."""

import os
import socket
import subprocess

from authdlib import wait_until
from conftest import BUILD, authctl
from pop3lib import Client, maildir_contents
from test_pop3d import mailroot, world  # noqa: F401 (fixtures)


def pop_login(port, user):
    c = Client(port)
    assert c.cmd("USER %s" % user).startswith("+OK")
    assert c.cmd("PASS %s-pw" % user).startswith("+OK"), user
    return c


def who(a, *args):
    r = authctl("-s", a.socket, "who", *args)
    assert r.returncode == 0, (r.stdout, r.stderr)
    rows = [line.split() for line in r.stdout.splitlines()[1:] if not line.endswith("session")
            and not line.endswith("sessions")]
    return r.stdout, rows


def master_connected(p):
    """True once pop3d's master holds its connection to authd's master socket."""
    r = authctl("-s", p.authd.socket, "who")
    return r.returncode == 0 and "no pop3d is connected" not in r.stdout


def test_who_lists_and_kick_ends_only_that_users_sessions(world):
    p = world()
    a = p.authd
    before = maildir_contents(p.maildirs["alice"])
    alice1 = pop_login(p.port, "alice")
    carol = pop_login(p.port, "carol")
    bob = pop_login(p.port, "bob")
    ports = sorted(c.sock.getsockname()[1] for c in (alice1, carol, bob))
    out, rows = who(a)
    assert len(rows) == 3, out
    assert sorted(r[0] for r in rows) == ["alice", "bob", "carol"], out
    assert sorted(int(r[1].rsplit(":", 1)[1]) for r in rows) == ports, out
    assert all(r[1].startswith("127.0.0.1:") for r in rows), out
    assert "3 sessions" in out
    pids = {int(r[4]) for r in rows if r[0] == "alice"}
    _, only = who(a, "bob")
    assert [r[0] for r in only] == ["bob"]

    # alice marks a message deleted, and is kicked before QUIT
    assert alice1.cmd("DELE 1").startswith("+OK")
    r = authctl("-s", a.socket, "kick", "alice")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "ended 1 session of alice on this host" in r.stdout, r.stdout
    assert alice1.closed(10)
    # no DELE without QUIT: every message is still there
    assert maildir_contents(p.maildirs["alice"]) == before
    # bob goes on
    assert bob.cmd("NOOP").startswith("+OK")
    assert bob.cmd("QUIT").startswith("+OK")
    p.wait_log(r"session user=alice pid=\d+ ended by a kick")
    assert "killed by signal" not in p.log_text()
    for pid in pids:
        wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
                   "zombie" in open("/proc/%d/status" % pid).read(), 10, "session gone")
    wait_until(lambda: p.metric("pop3d_sessions_ended_total", reason="kicked") == 1, 10,
               "kicked sessions counted")
    _, rows = who(a)
    assert [r[0] for r in rows] == ["carol"]
    assert carol.cmd("NOOP").startswith("+OK")
    # alice may log in again at once: a kick is not a ban
    c = pop_login(p.port, "alice")
    assert c.cmd("QUIT").startswith("+OK")


def test_flush_kick_flushes_and_kicks(world):
    p = world(start=False)
    # with a cache, so that there is an entry to flush
    a = p.authd
    a.stop()
    text = open(a.conf).read().replace("[cache]\nenabled = no\n", "[cache]\nenabled = yes\n")
    open(a.conf, "w").write(text)
    a.start()
    p.start()
    c = pop_login(p.port, "alice")
    r = authctl("-s", a.socket, "flush", "--kick", "alice")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "flushed 1 entries of alice" in r.stdout, r.stdout
    assert "ended 1 session of alice" in r.stdout, r.stdout
    assert c.closed(10)
    assert "kick: user alice (and a flush of its cache entries)" in open(a.log).read()


def test_kick_of_unknown_or_absent_user_and_bad_names(world):
    p = world()
    a = p.authd
    wait_until(lambda: master_connected(p), 10, "pop3d master connected to authd")
    r = authctl("-s", a.socket, "kick", "nobody-here")
    assert r.returncode == 0 and "ended 0 sessions" in r.stdout, (r.stdout, r.stderr)
    r = authctl("-s", a.socket, "kick", "a" * 400)
    assert r.returncode == 1 and "bad user name" in r.stderr, (r.stdout, r.stderr)
    r = authctl("-s", a.socket, "flush", "--kick")
    assert r.returncode == 2


def test_kick_without_pop3d_says_so(authd_factory, tmp_path):
    a = authd_factory([("pw", {"type": "passwd-file", "path": "/dev/null"})])
    r = authctl("-s", a.socket, "kick", "alice")
    assert r.returncode == 0, r.stderr
    assert "no pop3d is connected to this authd" in r.stdout
    r = authctl("-s", a.socket, "who")
    assert r.returncode == 0 and "no pop3d is connected" in r.stdout


def test_master_connects_at_start_and_after_authd_restarts(world):
    """No login is needed for kicks to reach pop3d: its master connects
    to authd at start-up (authd may come later) and again after authd
    restarts."""
    p = world(start=False)
    a = p.authd
    a.stop()
    p.start(wait=False)
    p.wait_log(r"pop3d started")     # and finds no authd
    a.start()
    wait_until(lambda: master_connected(p), 10, "pop3d master connected to authd")
    c = pop_login(p.port, "alice")
    a.stop()
    a.start()
    wait_until(lambda: master_connected(p), 10, "pop3d master reconnected to authd")
    r = authctl("-s", a.socket, "kick", "alice")
    assert "ended 1 session of alice" in r.stdout, (r.stdout, r.stderr)
    assert c.closed(10)
    # one warning for the lost connection, not one per retry
    assert p.log_text().count("(retrying in the background)") <= 1


class FakeMaster:
    """A pop3d master as authd sees it: root or authd's uid on the master
    socket, announcing sessions=yes, answering as told."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.sock.sendall(b"VERSION\t1\t0\tsessions=yes\n")
        self.buf = b""
        assert self.line().startswith("VERSION")

    def line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise EOFError
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def closed(self):
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def test_misbehaving_master_cannot_break_who_or_kick(world):
    p = world()
    a = p.authd
    wait_until(lambda: master_connected(p), 10, "pop3d master connected to authd")
    alice = pop_login(p.port, "alice")
    silent = FakeMaster(a.master_socket)        # never answers
    liar = FakeMaster(a.master_socket)          # answers garbage
    sessions = [None]

    def run_who():
        return subprocess.run([os.path.join(BUILD, "authctl"), "-s", a.socket, "who"],
                              capture_output=True, text=True, timeout=30)
    import threading
    t = threading.Thread(target=lambda: sessions.__setitem__(0, run_who()))
    t.start()
    q = liar.line()
    assert q.startswith("WHO\t"), q
    serial = q.split("\t")[1]
    # a session line with a bad field: the connection is dropped
    liar.sock.sendall(("SESSION\t%s\tuser=alice\trip=127.0.0.1\trport=99999\tstart=1\t"
                       "pid=5\ttls=no\n" % serial).encode())
    assert liar.closed()
    assert silent.line().startswith("WHO\t")
    t.join(30)
    r = sessions[0]
    # the real master's answer is there; the silent one is given up on
    assert r.returncode == 75, (r.stdout, r.stderr)
    assert "alice" in r.stdout and "1 session" in r.stdout, r.stdout
    assert "did not answer" in r.stderr
    # answers to questions never asked are ignored; an unknown command drops
    silent.sock.sendall(b"KICKED\t12345\tn=7\n")
    silent.sock.sendall(b"END\tnope\tn=1\n")
    r = authctl("-s", a.socket, "kick", "alice")
    assert "ended 1 session of alice" in r.stdout, (r.stdout, r.stderr)
    assert r.returncode == 75     # silent did not answer the KICK either
    assert alice.closed(10)
    silent.sock.close()
    # authd is fine
    r = authctl("-s", a.socket, "who")
    assert r.returncode == 0, r.stderr
