"""authd's administration commands (FLUSH, CACHE, RELOAD) are for
connections that asked for them in their handshake (VERSION ... admin=yes)
from root or authd's own uid; a connection that handshook without it, as
every pop3d front end does before it drops its privileges, can never gain
them (docs/auth-protocol.md, issue 13 item 2)."""

import ctypes
import os
import pwd
import signal
import socket

import pytest

from authdlib import AuthdClient, Reply, wait_until
from conftest import authctl
from pop3lib import IS_ROOT, MailRoot, Pop3d, passwd_line

ADMIN = ("CACHE\t{id}\n", "FLUSH\t{id}\n", "FLUSH\t{id}\tuser=alice\n", "RELOAD\t{id}\n",
         "WHO\t{id}\n", "KICK\t{id}\tuser=alice\n", "KICK\t{id}\tuser=alice\tflush=yes\n")


def passwd_auth(tmp_path, home="/nonexistent"):
    pw = tmp_path / "users"
    pw.write_text(passwd_line("alice", "alice-pw", home))
    return [("pw", {"type": "passwd-file", "path": str(pw)})]


def admin_refused(send, read):
    """Sends every admin command and checks each gets `not permitted`."""
    for i, cmd in enumerate(ADMIN, 1):
        send(cmd.format(id=i).encode())
        r = read()
        assert (r.cmd, r.id, r.kv.get("reason")) == ("ERROR", str(i), "not permitted"), \
            (cmd, r)


def test_front_end_handshake_has_no_admin_rights(authd_factory, tmp_path):
    # Connected as root (CI) or as authd's own uid: exactly the credentials
    # a front end has when it connects, before its privilege drop.
    a = authd_factory(passwd_auth(tmp_path), cache={"size": "1M"})
    reloads = a.metric("authd_reloads_total")
    c = AuthdClient(a.socket, timeout=10, handshake=False)
    c.send_raw(b"VERSION\t1\t0\n")
    v = c.read_reply()
    assert v.cmd == "VERSION" and v.kv.get("admin") == "no", v
    admin_refused(c.send_raw, c.read_reply)
    # An explicit admin=no is the same.
    c2 = AuthdClient(a.socket, timeout=10, handshake=False)
    c2.send_raw(b"VERSION\t1\t0\tadmin=no\n")
    assert c2.read_reply().kv.get("admin") == "no"
    admin_refused(c2.send_raw, c2.read_reply)
    # Authentication still works on such a connection.
    assert c.auth("alice", "alice-pw", rip="127.0.0.1").cmd == "OK"
    # The right cannot be regained: a second handshake ends the connection.
    c.send_raw(b"VERSION\t1\t0\tadmin=yes\n")
    assert c.closed(), "authd kept a connection that sent a second VERSION"
    assert a.metric("authd_reloads_total") == reloads
    assert "refused" in a.log_text()
    c2.close()
    c.close()


def test_admin_handshake_works_for_root_or_own_uid(authd_factory, tmp_path):
    a = authd_factory(passwd_auth(tmp_path), cache={"size": "1M"})
    c = AuthdClient(a.socket, timeout=10, handshake=False)
    c.send_raw(b"VERSION\t1\t0\tadmin=yes\n")
    assert c.read_reply().kv.get("admin") == "yes"
    c.send_raw(b"CACHE\t1\n")
    assert c.read_reply().cmd == "CACHE"
    c.send_raw(b"RELOAD\t2\n")
    assert (lambda r: (r.cmd, r.id))(c.read_reply()) == ("DONE", "2")
    c.close()
    # A malformed admin value is a broken handshake.
    c = AuthdClient(a.socket, timeout=10, handshake=False)
    c.send_raw(b"VERSION\t1\t0\tadmin=maybe\n")
    assert c.closed()
    c.close()
    # authctl asks for the right.
    for args in (("cache",), ("flush",), ("flush", "alice"), ("reload",), ("who",),
                 ("kick", "alice"), ("flush", "--kick", "alice")):
        r = authctl("-s", a.socket, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


@pytest.mark.skipif(not IS_ROOT, reason="an unprivileged uid other than authd's needs root")
def test_admin_handshake_refused_to_other_uid(authd_factory, tmp_path):
    a = authd_factory(passwd_auth(tmp_path))
    nobody = pwd.getpwnam("nobody")
    os.chmod(a.dir, 0o755)
    os.chmod(a.socket, 0o666)
    # pytest's temporary directories sit below a 0700 one of root's: the
    # child connects by a path relative to its working directory.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - child
        ok = 1
        try:
            os.close(r)
            os.chdir(a.dir)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            c = AuthdClient(os.path.basename(a.socket), timeout=10, handshake=False)
            c.send_raw(b"VERSION\t1\t0\tadmin=yes\n")
            ok = int(c.read_reply().kv.get("admin") == "no")
            for i, cmd in enumerate(ADMIN, 1):
                c.send_raw(cmd.format(id=i).encode())
                rep = c.read_reply()
                ok &= int(rep.cmd == "ERROR" and rep.kv.get("reason") == "not permitted")
        except BaseException:
            ok = 0
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"1"


# ---- a real front end's own connection ----------------------------------

def pidfd_getfd(pid, fd):
    """Duplicates pid's descriptor fd into this process (pidfd_getfd(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        n = libc.syscall(438, pidfd, fd, 0)     # SYS_pidfd_getfd
        if n == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return n
    finally:
        os.close(pidfd)


def front_end_authd_socket(pid, path):
    """A socket object on the very connection front end pid holds to
    authd's protocol socket at path."""
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                continue
        except OSError:
            continue
        dup = pidfd_getfd(pid, int(name))
        s = socket.socket(fileno=dup)
        try:
            if s.family == socket.AF_UNIX and s.getpeername() == path:
                return s
        except OSError:
            pass
        s.close()
    return None


@pytest.mark.skipif(not IS_ROOT, reason="pidfd_getfd on pop3d's front end needs root")
def test_real_front_end_connection_cannot_administer(authd_factory, tmp_path):
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open")
    mailroot = MailRoot()
    try:
        a = authd_factory(passwd_auth(tmp_path), cache={"size": "1M"})
        p = Pop3d(a, tmp_path, {"login-processes": "1"})
        p.start()
        try:
            nobody = pwd.getpwnam("nobody").pw_uid
            fes = wait_until(lambda: [pid for pid, uid in p.children() if uid == nobody],
                             10, "a front end")
            fe = fes[0]
            reloads = a.metric("authd_reloads_total")
            try:
                s = front_end_authd_socket(fe, a.socket)
            except PermissionError as e:
                pytest.skip("pidfd_getfd refused (no CAP_SYS_PTRACE?): %s" % e)
            assert s is not None, "front end %d holds no connection to authd" % fe
            # Stop the front end so that the replies come to us, not to it.
            os.kill(fe, signal.SIGSTOP)
            try:
                s.settimeout(10)
                f = s.makefile("rb")

                def read():
                    line = f.readline()
                    assert line.endswith(b"\n"), line
                    return Reply(line.decode().rstrip("\n"))
                admin_refused(s.sendall, read)
                # and no second handshake on it
                s.sendall(b"VERSION\t1\t0\tadmin=yes\n")
                assert f.readline() == b""
                f.close()
            finally:
                s.close()
                os.kill(fe, signal.SIGCONT)
            assert a.metric("authd_reloads_total") == reloads
        finally:
            p.stop()
    finally:
        mailroot.cleanup()
