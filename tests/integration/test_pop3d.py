"""pop3d integration tests: the real authd and pop3d on 127.0.0.1, real
clients (Python's poplib, curl, mpop/fetchmail) and raw sockets."""

import base64
import pwd
import re
import os
import poplib
import select
import signal
import socket
import subprocess
import time

import pytest

from authdlib import wait_until
from conftest import HELPERS, PYTHON
from pop3lib import (IS_ROOT, TEST_GID, TEST_UID, Client, MailRoot, Pop3d, passwd_line,
                     user_uid)

PLAIN_MSG = b"From: a@example.org\nSubject: one\n\nHello\n.\n..dots\n.x\nend\n"
CRLF_MSG = b"From: b@example.org\r\nSubject: two\r\n\r\nbody line 1\r\nbody line 2\r\n"
BINARY_MSG = (b"From: c@example.org\nSubject: bin\n\n" +
              bytes(range(1, 10)) + b"\n" + bytes(range(11, 256)) + b"\n" +
              b"no final newline")


def wire(msg):
    """What RETR sends (unstuffed): CRLF line ends and a final CRLF."""
    out = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


@pytest.fixture
def mailroot():
    m = MailRoot()
    yield m
    m.cleanup()


@pytest.fixture
def world(authd_factory, tmp_path, mailroot):
    """authd with a passwd-file of three users and pop3d in front of it."""
    started = []

    def make(pop3d_keys=None, users=None, auths=None, start=True, extra_passwd=""):
        md = {}
        lines = ""
        for name, msgs in (users or {"alice": [("new/1000000001.M1.host", PLAIN_MSG),
                                               ("cur/1000000002.M2.host:2,", CRLF_MSG),
                                               ("new/1000000003.M3.host", BINARY_MSG)],
                                     "bob": [],
                                     "carol": [("new/1.M9.host", b"Subject: c\n\nc\n")]}).items():
            md[name] = mailroot.maildir(name, msgs)
            lines += passwd_line(name, name + "-pw", os.path.dirname(md[name]))
        pw = tmp_path / "users"
        pw.write_text(lines + extra_passwd)
        a = authd_factory(auths or [("pw", {"type": "passwd-file", "path": str(pw)})])
        p = Pop3d(a, tmp_path, pop3d_keys)
        started.append(p)
        if start:
            p.start()
        p.authd = a
        p.maildirs = md
        return p
    yield make
    for p in started:
        p.stop()


def process_gone(pid):
    """True once pid has exited (reaped, or a zombie)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return "zombie" in f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True


def login(port, user="alice"):
    c = poplib.POP3("127.0.0.1", port, timeout=15)
    c.user(user)
    c.pass_(user + "-pw")
    return c


def test_poplib_full_session(world):
    p = world()
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    caps = c.capa()
    for k in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL"):
        assert k in caps, caps
    assert caps["SASL"] == ["PLAIN"]
    c.user("alice")
    assert c.pass_("alice-pw").startswith(b"+OK")
    caps = c.capa()
    assert "USER" not in caps and "SASL" not in caps and "TOP" in caps
    sizes = [len(wire(m)) for m in (PLAIN_MSG, CRLF_MSG, BINARY_MSG)]
    assert c.stat() == (3, sum(sizes))
    resp, listing, _ = c.list()
    assert [int(x.split()[1]) for x in listing] == sizes
    resp, uidls, _ = c.uidl()
    assert [x.split()[1] for x in uidls] == [b"1000000001.M1.host", b"1000000002.M2.host",
                                             b"1000000003.M3.host"]
    assert c.uidl(2).split()[2] == b"1000000002.M2.host"
    for i, m in enumerate((PLAIN_MSG, CRLF_MSG, BINARY_MSG), 1):
        resp, lines, octets = c.retr(i)
        assert b"\r\n".join(lines) + b"\r\n" == wire(m)
    resp, lines, _ = c.top(2, 1)
    assert lines == [b"From: b@example.org", b"Subject: two", b"", b"body line 1"]
    c.dele(1)
    c.dele(3)
    with pytest.raises(poplib.error_proto):
        c.retr(1)
    assert c.stat()[0] == 1
    c.rset()
    assert c.stat()[0] == 3
    c.dele(1)
    assert c.quit().startswith(b"+OK")

    c = login(p.port)
    assert c.stat() == (2, sizes[1] + sizes[2])
    resp, uidls, _ = c.uidl()
    assert [x.split()[1] for x in uidls] == [b"1000000002.M2.host", b"1000000003.M3.host"]
    c.quit()
    # the other way in, through poplib: SASL PLAIN with an initial response
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    assert c._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0alice-pw").decode()) \
        .startswith(b"+OK")
    assert c.stat()[0] == 2
    c.quit()
    md = p.maildirs["alice"]
    assert sorted(os.listdir(os.path.join(md, "cur"))) == [
        "1000000002.M2.host:2,S", "1000000003.M3.host:2,S"]
    assert os.listdir(os.path.join(md, "new")) == []
    log = p.wait_log("logout: ")
    assert "login: user=alice rip=127.0.0.1 method=USER secured=no pid=" in log
    assert "logout: user=alice rip=127.0.0.1 reason=QUIT retr=3/" in log


def test_auth_plain_both_ways(world):
    p = world()
    c = Client(p.port)
    resp = base64.b64encode(b"\0alice\0alice-pw").decode()
    assert c.cmd("AUTH PLAIN " + resp).startswith("+OK")
    assert c.cmd("STAT").startswith("+OK 3 ")
    assert c.cmd("QUIT").startswith("+OK")
    c.close()
    c = Client(p.port)
    assert c.cmd("AUTH PLAIN") == "+ "
    assert c.cmd(base64.b64encode(b"\0bob\0bob-pw").decode()).startswith("+OK")
    assert c.cmd("STAT") == "+OK 0 0"
    c.cmd("QUIT")
    c.close()
    # poplib's own SASL-less path is USER/PASS; check the log names PLAIN
    assert "login: user=alice rip=127.0.0.1 method=PLAIN" in p.log_text()


def test_curl_retrieves_and_lists(world):
    p = world()
    url = "pop3://127.0.0.1:%d/" % p.port
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "alice:alice-pw", url],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(b"\r\n")[:3] == [b"1 %d" % len(wire(PLAIN_MSG)),
                                           b"2 %d" % len(wire(CRLF_MSG)),
                                           b"3 %d" % len(wire(BINARY_MSG))]
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "alice:alice-pw", url + "1"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == wire(PLAIN_MSG)
    # SASL PLAIN through curl's login options
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--login-options", "AUTH=PLAIN",
                        "-u", "alice:alice-pw", url + "2"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == wire(CRLF_MSG)
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "alice:wrong", url],
                       capture_output=True, timeout=30)
    assert r.returncode != 0


def test_fetchmail_into_mbox_deletes(world, tmp_path):
    msgs = [("new/1000000001.F%d.host" % i,
             b"From: f%d@example.org\nSubject: m%d\n\nline\n.\n..x\nFrom me\n" % (i, i))
            for i in range(5)]
    p = world(users={"alice": msgs})
    mbox = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text("poll 127.0.0.1 port %d proto pop3 auth password timeout 20\n"
                  "  user alice password alice-pw is root here sslproto ''\n"
                  "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (p.port, mbox))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--pidfile", str(tmp_path / "fetchmail.pid"),
                        "--nosyslog", "-N", "-v"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = mbox.read_bytes()
    for _, m in msgs:
        # fetchmail adds its own Received: header; the rest arrives intact
        body = m.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
        assert body.replace(b"\r\n", b"\n") in got.replace(b"\r\n", b"\n")
    md = p.maildirs["alice"]
    assert os.listdir(os.path.join(md, "new")) == []
    assert os.listdir(os.path.join(md, "cur")) == []


def test_mpop_fetches_all(world, tmp_path):
    msgs = [("new/1000000001.P%d.host" % i, b"Subject: p%d\n\nbody %d\n.\n" % (i, i))
            for i in range(3)]
    p = world(users={"alice": msgs})
    out = tmp_path / "mpop-mbox"
    out.write_bytes(b"")
    rc = tmp_path / "mpoprc"
    rc.write_text("account default\nhost 127.0.0.1\nport %d\nuser alice\n"
                  "password alice-pw\nauth plain\ntls off\ntimeout 20\n"
                  "delivery mbox %s\nuidls_file %s\nkeep off\n"
                  % (p.port, out, tmp_path / "uidls"))
    rc.chmod(0o600)
    r = subprocess.run(["mpop", "-C", str(rc), "-q"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = out.read_bytes()
    for _, m in msgs:
        assert m.split(b"\n\n", 1)[1] in got
    assert os.listdir(os.path.join(p.maildirs["alice"], "new")) == []


def test_pipelining_across_handoff(world):
    p = world()
    c = Client(p.port)
    c.send("CAPA\r\nUSER alice\r\nPASS alice-pw\r\nSTAT\r\nUIDL 1\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
    assert c.line().startswith("+OK")
    while c.line() != ".":
        pass
    assert c.line() == "+OK"
    assert c.line().startswith("+OK Logged in, 3 messages")
    assert c.line().startswith("+OK 3 ")
    assert c.line() == "+OK 1 1000000001.M1.host"
    assert c.line().startswith("+OK %d octets" % len(wire(PLAIN_MSG)))
    assert c.multiline() == wire(PLAIN_MSG)
    assert c.line() == "+OK"
    assert c.line() == "+OK Logging out"
    assert c.closed()
    # AUTH PLAIN with the response on the next line, all in one write
    c = Client(p.port)
    c.send("AUTH PLAIN\r\n%s\r\nSTAT\r\nQUIT\r\n" %
           base64.b64encode(b"\0bob\0bob-pw").decode())
    assert c.line() == "+ "
    assert c.line().startswith("+OK Logged in")
    assert c.line() == "+OK 0 0"
    assert c.line() == "+OK Logging out"


def test_auth_plain_edge_cases_and_codes(world):
    p = world()
    c = Client(p.port)
    assert c.cmd("AUTH PLAIN") == "+ "
    assert c.cmd("*") == "-ERR Authentication cancelled"
    assert c.cmd("AUTH CRAM-MD5").startswith("-ERR")
    c.send("AUTH\r\n")
    assert c.line().startswith("+OK")
    assert c.multiline() == b"PLAIN\r\n"
    assert c.cmd("AUTH PLAIN !!!notbase64").startswith("-ERR [AUTH]")
    # authzid differing from authcid: refused
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"bob\0alice\0alice-pw").decode()) \
        .startswith("-ERR [AUTH]")
    c.close()
    c = Client(p.port)
    assert c.cmd("AUTH PLAIN =").startswith("-ERR [AUTH]")
    assert c.cmd("PASS x").startswith("-ERR")          # PASS before USER
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed"
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")


def test_auth_plain_between_user_and_pass(world):
    """An AUTH PLAIN attempt between USER and PASS forgets the USER name:
    the PASS is refused, never sent with the name AUTH decoded."""
    p = world(pop3d_keys={"auth-failure-delay": "0s"})
    c = Client(p.port)
    assert c.cmd("USER bob") == "+OK"
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong").decode()) \
        == "-ERR [AUTH] Authentication failed"
    assert c.cmd("PASS alice-pw") == "-ERR USER first"
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")


def test_failures_delayed_then_closed(world):
    p = world(pop3d_keys={"auth-failure-delay": "300ms", "max-auth-failures": "2"})
    c = Client(p.port)
    t0 = time.monotonic()
    c.cmd("USER alice")
    assert c.cmd("PASS bad") == "-ERR [AUTH] Authentication failed"
    assert time.monotonic() - t0 >= 0.25
    # while one client waits out its delay, another logs in at once
    c.send("USER alice\r\nPASS bad\r\n")
    t1 = time.monotonic()
    d = login(p.port)
    assert time.monotonic() - t1 < 0.25
    d.quit()
    assert c.line() == "+OK"
    assert c.line() == "-ERR [AUTH] Authentication failed"
    assert c.line().startswith("-ERR Too many failed logins")
    assert c.closed()


def test_overlong_lines_nul_and_garbage(world):
    p = world(pop3d_keys={"max-bad-commands": "4"})
    c = Client(p.port)
    assert c.cmd("NOOP " + "x" * 300) == "-ERR Line too long"
    assert c.cmd("NOOP") == "+OK"
    c.send(b"NO\0OP\r\n")
    assert c.line() == "-ERR NUL byte in command"
    c.send(b"X" * 5000 + b"\r\nNOOP\r\n")
    assert c.line() == "-ERR Line too long"
    assert c.line() == "+OK"
    assert c.cmd("\xff\xfe garbage").startswith("-ERR")
    assert c.line().startswith("-ERR Too many bad commands")
    assert c.closed()
    # a client that sends garbage without any line end, then vanishes
    g = Client(p.port)
    g.send(os.urandom(20000).replace(b"\n", b"x"))
    g.close()
    # the server still serves others
    c = login(p.port)
    c.quit()


def test_tempfail_and_authd_down(world, tmp_path):
    p = world()
    c = Client(p.port)
    p.authd.stop()
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("-ERR [SYS/TEMP]")
    c.close()
    # back up: logins resume without restarting pop3d
    p.authd.start()

    def works():
        try:
            x = login(p.port)
        except poplib.error_proto as e:
            assert b"[SYS/TEMP]" in e.args[0], e
            return False
        x.quit()
        return True
    wait_until(works, 20, "logins after authd restart", interval=0.1)


def test_concurrent_login_same_maildrop_in_use(world):
    p = world()
    a = login(p.port)
    with pytest.raises(poplib.error_proto) as e:
        login(p.port)
    assert b"[IN-USE]" in e.value.args[0]
    a.quit()
    b = login(p.port)
    b.quit()


def test_session_killed_mid_transaction_deletes_nothing(world):
    p = world()
    c = login(p.port)
    c.dele(1)
    c.dele(2)
    # the session is the child that logged "login: ... pid=N"
    pid = int(p.log_text().rsplit("pid=", 1)[1].split()[0])
    sessions = [x for x, uid in p.children() if uid == user_uid()] if IS_ROOT else None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_gone(pid), 10, "session gone")
    c.close()
    md = p.maildirs["alice"]
    assert len(os.listdir(os.path.join(md, "new"))) == 2
    assert len(os.listdir(os.path.join(md, "cur"))) == 1
    # and the lock did not go stale
    d = login(p.port)
    assert d.stat()[0] == 3
    d.quit()
    if sessions is not None:
        assert pid in sessions


def test_dropped_connection_deletes_nothing(world):
    p = world()
    c = Client(p.port)
    c.cmd("USER alice")
    c.cmd("PASS alice-pw")
    c.cmd("DELE 1")
    c.close()
    wait_until(lambda: "reason=disconnected" in p.log_text(), 10, "logout line")
    d = login(p.port)
    assert d.stat()[0] == 3
    d.quit()


def test_limits_per_ip_and_per_user(world):
    p = world(pop3d_keys={"max-connections-per-ip": "3", "max-sessions-per-user": "1"})
    held = [Client(p.port) for _ in range(3)]
    c = Client(p.port)
    assert c.greeting.startswith("-ERR [SYS/TEMP]")
    c.close()
    for h in held:
        h.close()
    wait_until(lambda: p.metric("pop3d_connections") == 0, 10, "connections released")
    a = login(p.port)
    # a second session of alice: refused by max-sessions-per-user before the
    # maildrop lock is even tried
    with pytest.raises(poplib.error_proto) as e:
        login(p.port)
    assert b"[IN-USE]" in e.value.args[0]
    a.quit()


def test_preauth_timeout(world):
    p = world(pop3d_keys={"preauth-timeout": "1s"})
    c = Client(p.port)
    t0 = time.monotonic()
    assert c.line(timeout=5).startswith("-ERR")
    assert c.closed(5)
    assert 0.8 < time.monotonic() - t0 < 4


def test_frontend_killed_is_restarted_sessions_survive(world):
    p = world(pop3d_keys={"login-processes": "1"})
    s = login(p.port)
    fe = [pid for pid, uid in p.children()
          if "front end %d started" % pid in p.log_text()]
    assert len(fe) == 1
    os.kill(fe[0], signal.SIGKILL)
    # the session, a child of the master, carries on
    assert s.stat()[0] == 3
    s.quit()

    def new_fe():
        try:
            c = login(p.port, "bob")
        except (OSError, poplib.error_proto):
            return False
        c.quit()
        return True
    wait_until(new_fe, 20, "a replacement front end", interval=0.1)


def test_slow_user_does_not_block_others(world, tmp_path):
    users = tmp_path / "ext-users"
    piddir = tmp_path / "pids"
    piddir.mkdir()
    uid = user_uid()
    lines = ""
    # the external helper: "slow3" sleeps 3 s, beyond the 1 s timeout
    p = world(users={"slow3": [], "fast": [("new/1.a", b"S: x\n\nx\n")]},
              auths=[("ext", {"type": "external", "workers": "2", "timeout": "1s",
                              "default-gid": str(TEST_GID if IS_ROOT else os.getgid()),
                              "program": "%s %s/ext_helper.py %s %s"
                              % (PYTHON, HELPERS, users, piddir)})],
              start=False)
    for name in ("slow3", "fast"):
        lines += "%s:%s-pw:%d:%s\n" % (name, name, uid, os.path.dirname(p.maildirs[name]))
    users.write_text(lines)
    p.start()
    slow = Client(p.port)
    slow.cmd("USER slow3")
    t0 = time.monotonic()
    slow.send("PASS slow3-pw\r\n")
    # meanwhile: greetings and logins of others complete promptly
    for _ in range(3):
        t = time.monotonic()
        f = Client(p.port)
        assert f.cmd("USER fast") == "+OK"
        assert f.cmd("PASS fast-pw").startswith("+OK Logged in")
        assert f.cmd("QUIT").startswith("+OK")
        f.close()
        assert time.monotonic() - t < 0.9
    assert slow.line(timeout=10).startswith("-ERR [SYS/TEMP]")
    assert 0.8 < time.monotonic() - t0 < 5
    slow.close()


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        st = f.read()
    out = {}
    for line in st.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="privilege separation needs root")
def test_privileges_really_dropped(world, tmp_path):
    # a user whose uid is below first-valid-uid, and one mapped to root
    p = world(users={"alice": [("new/1.a", b"S: x\n\nx\n")]},
              extra_passwd=passwd_line("lowuid", "lowuid-pw", "/tmp", uid=500) +
              passwd_line("rootish", "rootish-pw", "/tmp", uid=0))
    nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
    fes = [pid for pid, _ in p.children() if "front end %d started" % pid in p.log_text()]
    assert len(fes) == 2
    for pid in fes:
        st = proc_status(pid)
        assert st["Uid"] == [nobody] * 4, st["Uid"]
        assert os.readlink("/proc/%d/root" % pid) == os.path.join(p.dir, "pop3d-empty")
    c = login(p.port)
    pid = int(p.log_text().rsplit("pid=", 1)[1].split()[0])
    st = proc_status(pid)
    assert st["Uid"] == [str(TEST_UID)] * 4
    assert st["Gid"] == [str(TEST_GID)] * 4
    assert st["Groups"] in ([str(TEST_GID)], [])
    assert c.stat()[0] == 1
    c.quit()
    for user in ("lowuid", "rootish"):
        with pytest.raises(poplib.error_proto) as e:
            login(p.port, user)
        assert b"[SYS/PERM]" in e.value.args[0]
    assert "uid below first-valid-uid" in p.log_text()
    assert "refusing to run a session as uid or gid 0" in p.log_text()


def fd_links(pid):
    """{fd: what it is} above stderr of pid ("socket:[123]", a path...)."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        if int(fd) > 2:
            try:
                out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                pass
    return out


def kernel_objects(links):
    """The sockets and pipes among links: each "socket:[ino]" names one."""
    return {l for l in links.values() if l.startswith(("socket:", "pipe:"))}


def test_children_hold_nothing_of_the_master(world):
    # A session runs as the mailbox owner: of the master's descriptors
    # (listeners, authd and front-end connections, stats readers, its event
    # loop) it holds only the writing end of the report socket.
    p = world()
    c = login(p.port, "alice")
    (_, pid), = session_pids(p, 1)
    master = kernel_objects(fd_links(p.proc.pid))
    held = fd_links(pid)
    assert len(master & kernel_objects(held)) == 1, (held, master)
    # client, report socket, channel to the master, and the maildrop
    md = p.maildirs["alice"]
    assert len(kernel_objects(held)) == 3, held
    assert all(l.startswith("socket:") or l == md or l.startswith(md + "/")
               for l in held.values()), held
    fes = [f for f, _ in p.children() if "front end %d started" % f in p.log_text()]
    assert len(fes) == 2
    for fe in fes:
        assert not master & kernel_objects(fd_links(fe)), fd_links(fe)
    c.quit()
    wait_spares(p, 1)
    held = fd_links(pid)
    assert len(held) == 2 and len(master & kernel_objects(held)) == 1, held  # a spare


def test_authd_killed_and_restarted_during_login_storm(world):
    import threading
    users = {"storm%d" % i: [("new/1.a", b"S: x\n\nx\n")] for i in range(6)}
    p = world(users=users)
    stop = threading.Event()
    results = {"ok": 0, "temp": 0, "other": []}
    lock = threading.Lock()

    def storm(user):
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                c = Client(p.port, timeout=15)
                r = c.greeting
                if r.startswith("+OK"):
                    c.cmd("USER " + user)
                    r = c.cmd("PASS %s-pw" % user)
                if r.startswith("+OK"):
                    c.cmd("QUIT")
                c.close()
            except (OSError, EOFError) as e:
                r = "exception %r" % e
            with lock:
                if r.startswith("+OK"):
                    results["ok"] += 1
                elif r.startswith("-ERR [SYS/TEMP]"):
                    results["temp"] += 1
                else:
                    results["other"].append(r)
    threads = [threading.Thread(target=storm, args=(u,)) for u in users]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: results["ok"] >= 20, 20, "logins before the kill")
        p.authd.proc.kill()
        p.authd.proc.wait()
        p.authd.stop(check=False)
        wait_until(lambda: results["temp"] >= 5, 20, "tempfails while authd is down")
        ok_before = results["ok"]
        p.authd.start()
        wait_until(lambda: results["ok"] >= ok_before + 20, 30, "logins after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results["other"] == []
    assert p.proc.poll() is None


def test_login_delay_expire_implementation(world):
    p = world(pop3d_keys={"login-delay": "2", "expire": "NEVER", "implementation": "yes",
                          "greeting": "Hello there"})
    c = Client(p.port)
    assert c.greeting == "+OK Hello there"
    c.send("CAPA\r\n")
    assert c.line().startswith("+OK")
    caps = c.multiline().decode().split("\r\n")
    assert "LOGIN-DELAY 2" in caps and "EXPIRE NEVER" in caps
    assert "IMPLEMENTATION pop3d" in caps
    c.close()
    a = login(p.port)
    a.quit()
    with pytest.raises(poplib.error_proto) as e:
        login(p.port)
    assert b"[LOGIN-DELAY]" in e.value.args[0]
    b = login(p.port, "bob")    # another user is not affected
    b.quit()


def test_missing_and_damaged_maildrop(world, mailroot):
    p = world(users={"alice": []},
              extra_passwd=passwd_line("ghost", "ghost-pw", mailroot.path + "/nohome") +
              passwd_line("broken", "broken-pw", mailroot.path + "/broken"))
    os.makedirs(mailroot.path + "/broken/Maildir/new")      # no cur/
    mailroot.chown(mailroot.path + "/broken")
    for user in ("ghost", "broken"):
        c = Client(p.port)
        c.cmd("USER " + user)
        r = c.cmd("PASS %s-pw" % user)
        assert r.startswith("-ERR [SYS/PERM]"), r
        assert c.closed()
    assert p.proc.poll() is None


def test_client_vanishes_during_retr(world):
    big = b"Subject: big\n\n" + (b"0123456789" * 7 + b"\n.dot line\n") * 100000
    p = world(users={"alice": [("new/1.big", big), ("new/2.small", b"S: s\n\ns\n")]})
    c = Client(p.port)
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK")
    c.cmd("DELE 2")
    c.send("RETR 1\r\n")
    assert c.line().startswith("+OK")
    c.sock.recv(1000)
    c.close()       # mid-transfer
    wait_until(lambda: "reason=disconnected" in p.log_text() or
               "reason=io-error" in p.log_text(), 10, "session end")
    d = login(p.port)
    assert d.stat()[0] == 2             # nothing deleted
    resp, lines, octets = d.retr(1)     # and a full RETR streams it intact
    assert b"\r\n".join(lines) + b"\r\n" == wire(big)
    d.quit()


def test_config_check(world, tmp_path):
    from conftest import BUILD
    p = world(start=False)
    r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", p.conf],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout
    text = open(p.conf).read()
    for bad, msg in (("listen = 127.0.0.1:%d" % p.port, "listen"),
                     ("login-delay = soon", "login-delay"),
                     ("maildrop = mmdf:/var/mail/%u", "maildrop")):
        conf = tmp_path / "bad.conf"
        t = text.replace("[pop3d]\n", "[pop3d]\n" + bad.replace(
            "127.0.0.1:%d" % p.port, "localhost") + "\n", 1) if "listen" not in bad else \
            text.replace("listen = 127.0.0.1:%d" % p.port, "listen = localhost:1x")
        conf.write_text(t)
        conf.chmod(0o600)
        r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", str(conf)],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0 and msg in r.stderr, (bad, r.stderr)


def test_ipv6_and_several_listeners(world):
    from pop3lib import free_port
    port2 = free_port()
    p = world(pop3d_keys={"listen": None}, start=False)
    text = open(p.conf).read().replace(
        "listen = None", "listen = 127.0.0.1:%d, [::1]:%d" % (p.port, port2))
    open(p.conf, "w").write(text)
    p.start()
    c = poplib.POP3("::1", port2, timeout=15)
    c.user("bob")
    c.pass_("bob-pw")
    assert c.stat() == (0, 0)
    c.quit()
    assert "login: user=bob rip=::1 " in p.log_text()


def test_many_idle_connections_while_logging_in(world):
    import threading
    p = world(pop3d_keys={"max-connections-per-ip": "500", "max-connections": "400"})
    idle = []
    errors = []

    def open_some(n):
        for _ in range(n):
            try:
                idle.append(Client(p.port, timeout=20))
            except Exception as e:      # noqa: BLE001 (reported below)
                errors.append(repr(e))
    threads = [threading.Thread(target=open_some, args=(50,)) for _ in range(4)]
    for t in threads:
        t.start()
    # logins go on while the connection table grows around them
    for i in range(10):
        c = login(p.port, ("alice", "bob", "carol")[i % 3])
        c.stat()
        c.quit()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(idle) == 200 and all(c.greeting.startswith("+OK") for c in idle)
    # sessions that said "+OK Logging out" are released when reaped
    wait_until(lambda: p.metric("pop3d_connections") == 200, 20, "sessions reaped")
    assert p.metric("pop3d_logins_total", result="ok") == 10
    for c in idle:
        c.close()
    wait_until(lambda: p.metric("pop3d_connections") == 0, 20, "connections released")


def test_session_autologout_deletes_nothing(world):
    p = world(pop3d_keys={"session-timeout": "1s"})
    c = Client(p.port)
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK")
    assert c.cmd("DELE 1").startswith("+OK")
    t0 = time.monotonic()
    assert c.closed(10)     # RFC 1939: close without a response
    assert 0.8 < time.monotonic() - t0 < 5
    wait_until(lambda: "reason=autologout" in p.log_text(), 10, "logout line")
    d = login(p.port)
    assert d.stat()[0] == 3
    d.quit()


# ---- session processes that serve again (session-reuse) ------------------------------

LOGIN_LINE = r"login: user=(\S+) .*? pid=(\d+)"


def session_pids(p, n):
    """[(user, pid)] of every login in the log, in order, once there are n."""
    return [(m.group(1), int(m.group(2))) for m in
            re.finditer(LOGIN_LINE, p.wait_log(LOGIN_LINE, n))]


def wait_spares(p, n):
    wait_until(lambda: p.metric("pop3d_session_spares") == n, 10,
               "%d spare session process(es)" % n)


def test_session_process_serves_the_next_login(world):
    p = world()
    c = login(p.port, "alice")
    c.dele(1)
    c.quit()
    wait_spares(p, 1)
    (_, first), = session_pids(p, 1)
    assert not process_gone(first)
    # the spare serves carol (same uid): her maildrop, not alice's
    c = login(p.port, "carol")
    assert c.stat()[0] == 1
    assert [x.split()[1] for x in c.uidl()[1]] == [b"1.M9.host"]
    c.quit()
    wait_spares(p, 1)
    # and alice again: her DELE was applied and her lock released
    c = Client(p.port)
    c.send("USER alice\r\nPASS alice-pw\r\nSTAT\r\nLIST 1\r\nQUIT\r\n")
    assert c.line() == "+OK"
    assert c.line().startswith("+OK Logged in, 2 messages")
    assert c.line().startswith("+OK 2 ")
    assert c.line() == "+OK 1 %d" % len(wire(CRLF_MSG))
    assert c.line() == "+OK Logging out"
    assert c.closed()
    assert [pid for _, pid in session_pids(p, 3)] == [first] * 3
    assert p.metric("pop3d_session_starts_total", process="fork") == 1
    assert p.metric("pop3d_session_starts_total", process="reuse") == 2
    wait_until(lambda: p.metric("pop3d_sessions_ended_total", reason="QUIT") == 3, 10,
               "three sessions ended by QUIT")
    assert p.metric("pop3d_sessions") == 0
    assert p.metric("pop3d_sessions_ended_total", reason="failed") == 0
    assert p.log_text().count("logout: user=") == 3


def settle():
    """pop3d trusts a listing only of directories unchanged for 2 s before
    it was read (POP3D_INDEX_SETTLE_S: a change within the same clock tick
    may keep their time stamps): the passing of time is the condition."""
    time.sleep(2.2)


def warm_listings(p):
    return p.metric("pop3d_session_warm_listings_total")


def test_spare_keeps_the_listing_for_the_same_user(world):
    """A repeated poll (UIDL, QUIT) served by the spare that served the
    user last uses the listing it kept; another user, a delivery and the
    poll's own changes each make it read the maildrop again."""
    p = world()
    settle()
    c = login(p.port, "alice")
    first = c.uidl()[1]
    c.quit()
    wait_spares(p, 1)
    assert warm_listings(p) == 0
    for n in (1, 2):
        c = login(p.port, "alice")
        assert c.uidl()[1] == first and c.stat()[0] == 3
        c.quit()
        wait_spares(p, 1)
        assert warm_listings(p) == n
    # carol (same uid) gets that spare: her maildrop, never alice's listing
    c = login(p.port, "carol")
    assert [x.split()[1] for x in c.uidl()[1]] == [b"1.M9.host"]
    c.quit()
    wait_spares(p, 1)
    assert warm_listings(p) == 2
    # the spare last served carol: alice's listing is gone
    c = login(p.port, "alice")
    assert c.uidl()[1] == first
    c.quit()
    wait_spares(p, 1)
    assert warm_listings(p) == 2
    # a delivery between two polls: listed, not hidden by the kept listing
    md = p.maildirs["alice"]
    with open(os.path.join(md, "tmp", "2000000001.M4.host"), "wb") as f:
        f.write(b"Subject: new\n\nnew\n")
    os.rename(os.path.join(md, "tmp", "2000000001.M4.host"),
              os.path.join(md, "new", "2000000001.M4.host"))
    c = login(p.port, "alice")
    assert c.stat()[0] == 4
    assert [x.split()[1] for x in c.uidl()[1]][:3] == [x.split()[1] for x in first]
    c.quit()
    wait_spares(p, 1)
    assert warm_listings(p) == 2
    # a poll that changes the maildrop (RETR: Seen at QUIT; DELE) keeps
    # nothing: the next one reads it, and finds the changes
    settle()
    c = login(p.port, "alice")
    c.retr(4)
    c.dele(1)
    c.quit()
    wait_spares(p, 1)
    c = login(p.port, "alice")
    assert c.stat()[0] == 3
    c.quit()
    assert warm_listings(p) == 2
    assert sum(1 for _ in os.listdir(os.path.join(md, "new"))) == 1
    assert p.metric("pop3d_session_starts_total", process="fork") == 1


def test_each_user_gets_the_spare_that_served_it(world):
    """Two spares wait, one that served alice last and one carol: each
    user's next poll goes to its own, and finds its listing."""
    p = world()
    settle()
    a, c = login(p.port, "alice"), login(p.port, "carol")
    a.quit()
    c.quit()
    wait_spares(p, 2)
    for n, user in ((1, "carol"), (2, "alice"), (3, "carol")):
        x = login(p.port, user)
        assert x.stat()[0] == (1 if user == "carol" else 3)
        x.quit()
        wait_spares(p, 2)
        assert warm_listings(p) == n, "%s's poll did not find its spare's listing" % user


def test_kept_listing_never_serves_another_user_of_the_maildrop(world, mailroot):
    """alice2 logs in to alice's maildrop (same uid, same directory): the
    spare that served alice reads it again for alice2, and the other way
    round."""
    p = world(extra_passwd=passwd_line("alice2", "alice2-pw",
                                       os.path.join(mailroot.path, "alice")))
    settle()
    login(p.port, "alice").quit()
    wait_spares(p, 1)
    for user in ("alice2", "alice"):
        c = login(p.port, user)
        assert c.stat()[0] == 3
        c.quit()
        wait_spares(p, 1)
    assert warm_listings(p) == 0
    assert p.metric("pop3d_session_starts_total", process="reuse") == 2


def test_session_reuse_limits(world):
    p = world({"session-reuse": "2"})
    login(p.port, "bob").quit()
    wait_spares(p, 1)
    login(p.port, "bob").quit()
    pids = [pid for _, pid in session_pids(p, 2)]
    assert pids[0] == pids[1]
    # two logins served: it leaves instead of waiting for a third
    wait_until(lambda: process_gone(pids[0]), 10, "process done after 2 logins")
    assert p.metric("pop3d_session_spares") == 0
    login(p.port, "bob").quit()
    assert session_pids(p, 3)[-1][1] != pids[0]
    assert p.metric("pop3d_session_starts_total", process="fork") == 2


def test_idle_spare_leaves_after_its_timeout(world):
    p = world({"session-spare-timeout": "1s"})
    login(p.port, "bob").quit()
    (_, pid), = session_pids(p, 1)
    wait_until(lambda: process_gone(pid), 10, "idle spare gone")
    assert p.metric("pop3d_session_spares") == 0


def test_no_spares_means_a_process_per_login(world):
    p = world({"session-spares": "0"})
    for _ in range(2):
        login(p.port, "bob").quit()
    pids = [pid for _, pid in session_pids(p, 2)]
    assert pids[0] != pids[1]
    wait_until(lambda: process_gone(pids[0]) and process_gone(pids[1]), 10, "sessions gone")
    assert p.metric("pop3d_session_starts_total", process="reuse") == 0
    assert p.metric("pop3d_session_spares") == 0


def test_spare_killed_or_reload_then_new_process(world):
    p = world()
    login(p.port, "bob").quit()
    wait_spares(p, 1)
    (_, first), = session_pids(p, 1)
    os.kill(first, signal.SIGKILL)
    wait_spares(p, 0)
    c = login(p.port, "carol")
    assert c.stat()[0] == 1
    c.quit()
    wait_spares(p, 1)
    second = session_pids(p, 2)[-1][1]
    assert second != first
    # a reload: spares hold the old settings, so they go
    os.kill(p.proc.pid, signal.SIGHUP)
    wait_spares(p, 0)
    wait_until(lambda: process_gone(second), 10, "spare gone after the reload")
    login(p.port, "bob").quit()
    assert session_pids(p, 3)[-1][1] not in (first, second)
    assert p.metric("pop3d_session_starts_total", process="reuse") == 0
    assert p.metric("pop3d_sessions_ended_total", reason="killed") == 0


@pytest.mark.root
def test_spare_serves_only_its_own_uid(world, mailroot):
    other = TEST_UID + 1
    p = world(extra_passwd="dave:{PLAIN}dave-pw:%d:%d::%s::\n" %
              (other, TEST_GID, os.path.join(mailroot.path, "dave")))
    md = mailroot.maildir("dave", [("new/1.d", b"S: d\n\nd\n")], owner=False)
    for dirpath, _, files in os.walk(os.path.dirname(md)):
        os.chown(dirpath, other, TEST_GID)
        for f in files:
            os.chown(os.path.join(dirpath, f), other, TEST_GID)
    login(p.port, "alice").quit()
    wait_spares(p, 1)
    c = login(p.port, "dave")
    assert c.stat()[0] == 1
    (_, a), (_, d) = session_pids(p, 2)
    assert a != d
    assert proc_status(d)["Uid"] == [str(other)] * 4
    c.quit()
    wait_spares(p, 2)
    # each later login goes to the spare of its own uid
    login(p.port, "carol").quit()
    login(p.port, "dave").quit()
    assert [pid for _, pid in session_pids(p, 4)] == [a, d, a, d]
    assert proc_status(a)["Uid"] == [str(TEST_UID)] * 4


def test_limits_count_the_same_way(world):
    """max-bad-commands and max-auth-failures both count to n: the n-th bad
    command or failed login is answered, then the connection is closed;
    after n-1 the client goes on."""
    n = 3
    p = world(pop3d_keys={"max-bad-commands": str(n), "max-auth-failures": str(n),
                          "auth-failure-delay": "10ms"})

    def bogus(c):
        assert c.cmd("BOGUS") == "-ERR Unknown command"

    def failed_login(c):
        assert c.cmd("USER alice") == "+OK"
        assert c.cmd("PASS bad") == "-ERR [AUTH] Authentication failed"

    def check(c, bad):
        for _ in range(n - 1):
            bad(c)
        assert c.cmd("NOOP") == "+OK"
        bad(c)
        assert c.line().startswith("-ERR Too many")
        assert c.closed()

    check(Client(p.port), bogus)
    check(Client(p.port), failed_login)
    c = Client(p.port)
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    check(c, bogus)


def test_daemons_work_from_the_root_directory(world):
    """Started with -f from some directory, neither daemon keeps it, and
    no session (running as the mailbox owner) inherits it."""
    p = world()
    c = login(p.port)
    c.stat()
    (_, pid), = session_pids(p, 1)
    chroot = os.path.join(p.dir, "pop3d-empty")
    assert os.readlink("/proc/%d/cwd" % p.proc.pid) == "/"
    assert os.readlink("/proc/%d/cwd" % p.authd.proc.pid) == "/"
    assert os.readlink("/proc/%d/cwd" % pid) == "/"
    for child, _ in p.children():       # front ends: "/" of their chroot
        try:
            assert os.readlink("/proc/%d/cwd" % child) in ("/", chroot)
        except FileNotFoundError:
            pass                        # a session that just ended
    c.quit()


def test_world_readable_configuration_warned(world):
    """pop3d warns about a configuration others can read, as authd does:
    it may hold the TLS key's location and the authd sockets' paths today,
    secrets tomorrow."""
    p = world(start=False)
    os.chmod(p.conf, 0o644)
    p.start()
    p.wait_log(r"configuration file %s is readable or writable by others \(mode 0644\)"
               % re.escape(p.conf))


@pytest.mark.skipif(not IS_ROOT, reason="tells the front end from sessions by its uid")
def test_front_end_that_stops_reading_is_replaced_not_waited_for(world):
    """A front end that reads nothing of its channel: the master never
    waits for it.  While its queue is full new connections are refused at
    once ([SYS/TEMP]); a full queue that has not moved for 5 s makes it a
    wedged front end, which is replaced, and logins work again."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    p = world(pop3d_keys={"login-processes": "1", "max-connections-per-ip": "5000",
                          "max-connections": "5000"})
    nobody = pwd.getpwnam("nobody").pw_uid
    fe = [pid for pid, uid in p.children() if uid == nobody]
    assert len(fe) == 1, p.children()
    held = []
    os.kill(fe[0], signal.SIGSTOP)
    try:
        # fill the kernel's buffer and the master's queue
        refused = None
        for _ in range(60):
            batch = [socket.create_connection(("127.0.0.1", p.port), timeout=5)
                     for _ in range(50)]
            held += batch
            ready, _, _ = select.select(batch, [], [], 0.1)
            if ready:
                refused = ready[0].recv(100)
                break
        assert refused is not None and refused.startswith(b"-ERR [SYS/TEMP]"), len(held)
        # a full queue is a busy front end, not yet a wedged one: it keeps
        # its place (and its clients) until its queue stands still for 5 s
        assert "does not read its channel" not in p.log_text()

        def replaced():
            c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            held.append(c)
            return "does not read its channel" in p.log_text()
        wait_until(replaced, 20, "the wedged front end replaced", interval=0.5)
        c = login(p.port)
        assert c.stat()[0] == 3
        c.quit()
    finally:
        os.kill(fe[0], signal.SIGCONT)
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
