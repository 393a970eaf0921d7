"""authd integration tests: the real daemon on a UNIX socket, real helper
programs, real password hashes (openssl passwd)."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from authdlib import AuthdClient, master_redeem, wait_until
from conftest import BUILD, HELPERS, PYTHON, ext_auth

pytestmark = pytest.mark.threaded


def sha512(pw):
    return "{SHA512-CRYPT}" + subprocess.check_output(
        ["openssl", "passwd", "-6", pw], text=True).strip()


def write_passwd(path, entries):
    """entries: (user, hash, uid) tuples."""
    with open(path + ".tmp", "w") as f:
        for user, h, uid in entries:
            f.write("%s:%s:%d:%d::/home/%s::\n" % (user, h, uid, uid, user))
    os.chmod(path + ".tmp", 0o600)
    os.rename(path + ".tmp", path)


def authctl(authd, *args, password="", timeout=30):
    return subprocess.run([os.path.join(BUILD, "authctl"), "-s", authd.socket] + list(args),
                          input=password + "\n", capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def pwfile(tmp_path):
    path = str(tmp_path / "users")
    write_passwd(path, [("alice", sha512("alice-pw"), 1001),
                        ("bob", "{PLAIN}bob-pw", 1002)])
    return path


def test_authctl_accepts_and_rejects(authd_factory, pwfile):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile})])
    r = authctl(a, "test", "alice", password="alice-pw")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "uid=1001" in r.stdout and "home=/home/alice" in r.stdout
    assert "ticket" not in r.stdout
    r = authctl(a, "test", "alice", password="wrong")
    assert r.returncode == 1 and r.stdout.startswith("FAIL")
    r = authctl(a, "test", "nobody", password="x")
    assert r.returncode == 1
    r = authctl(a, "test", password="x")
    assert r.returncode == 2
    # the password is never logged
    assert "alice-pw" not in a.log_text() and "wrong" not in a.log_text().replace(
        "wrong credentials", "")


def test_authctl_unreachable(tmp_path):
    r = subprocess.run([os.path.join(BUILD, "authctl"), "-s", str(tmp_path / "none.sock"),
                        "test", "alice"], input="x\n", capture_output=True, text=True)
    assert r.returncode == 69
    assert "cannot connect" in r.stderr


def test_config_check(tmp_path, pwfile):
    conf = tmp_path / "bad.conf"
    conf.write_text("[authd]\nsocket = /x\nmaster-socket = /y\nbogus-key = 1\n")
    r = subprocess.run([os.path.join(BUILD, "authd"), "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.conf:4" in r.stderr and "bogus-key" in r.stderr
    conf.write_text("[authd]\nsocket = /x\nmaster-socket = /y\n[pop3d]\nlisten = 127.0.0.1:110\n"
                    "auth-socket = /x\nmaster-auth-socket = /y\n[authenticator a]\n"
                    "type = passwd-file\npath = %s\ntimeout = 5 parsecs\n" % pwfile)
    r = subprocess.run([os.path.join(BUILD, "authd"), "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad.conf:11" in r.stderr and "timeout" in r.stderr
    conf.write_text(conf.read_text().replace("5 parsecs", "1500ms"))
    r = subprocess.run([os.path.join(BUILD, "authd"), "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_chain_order(authd_factory, tmp_path, pwfile, helper_users):
    second = str(tmp_path / "users2")
    write_passwd(second, [("alice", sha512("other"), 3001), ("erin", "{PLAIN}erin-pw", 3002)])
    a = authd_factory([("first", {"type": "passwd-file", "path": pwfile}),
                       ("second", {"type": "passwd-file", "path": second}),
                       ("third", ext_auth(helper_users))])
    c = a.client()
    r = c.auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1001" and r.kv["authenticator"] == "first"
    # FAIL in the first authenticator ends the chain: the second is not asked
    assert c.auth("alice", "other").cmd == "FAIL"
    # NOUSER passes the request on
    r = c.auth("erin", "erin-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "second" and r.kv["uid"] == "3002"
    r = c.auth("carol", "carol-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "third"
    assert r.kv["uid"] == "2001" and r.kv["home"] == "/home/carol"
    assert c.auth("nobody", "x").cmd == "FAIL"


def test_fail_vs_tempfail_and_defaults(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users, **{
        "default-uid": "5000", "default-gid": "5001", "default-home": "/srv/mail",
        "default-maildrop": "maildir:/srv/mail/Maildir"}))])
    c = a.client()
    r = c.auth("tempfail1", "x")
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "unavailable"
    assert c.auth("carol", "bad").cmd == "FAIL"
    r = c.auth("dave", "dave-pw")
    assert r.cmd == "OK"
    assert (r.kv["uid"], r.kv["gid"], r.kv["home"], r.kv["maildrop"]) == \
        ("5000", "5001", "/srv/mail", "maildir:/srv/mail/Maildir")
    r = c.auth("carol", "carol-pw")
    assert r.kv["uid"] == "2001" and r.kv["home"] == "/home/carol"  # backend wins


def test_isolation_fast_users_while_helper_hangs(authd_factory, tmp_path, helper_users):
    users = [("user%d" % i, "{PLAIN}pw%d" % i, 4000 + i) for i in range(50)]
    path = str(tmp_path / "users")
    write_passwd(path, users)
    # 200 pipelined requests without an address: one source, over the
    # default per-source-limit
    a = authd_factory([("pw", {"type": "passwd-file", "path": path, "workers": "2",
                               "per-source-limit": "1000"}),
                       ("ext", ext_auth(helper_users, workers="8", timeout="60s"))])
    slow = a.client()
    slow_ids = [slow.send_auth("hang%d" % i, "x") for i in range(8)]
    # every slow request has reached a helper (8 helpers started)
    wait_until(lambda: len(os.listdir(helper_users[1])) >= 8, 30, "8 helpers")
    fast = a.client()
    t0 = time.monotonic()
    ids = {}
    for i in range(200):
        u = users[i % len(users)]
        ids[fast.send_auth(u[0], "pw%d" % (i % len(users)))] = u
    for _ in range(200):
        r = fast.read_reply(timeout=30)
        assert r.cmd == "OK", r
        assert r.kv["user"] == ids.pop(r.id)[0]
    elapsed = time.monotonic() - t0
    assert not ids
    # the 8 slow ones are all still pending
    assert not slow.pending(0.05), "a hung request was answered"
    assert elapsed < 30
    slow.close()


def test_timeout_answers_near_configured_timeout(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users, timeout="1s", workers="2"))])
    c = a.client()
    t0 = time.monotonic()
    r = c.auth("hang1", "x", timeout=10)
    dt = time.monotonic() - t0
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "timeout"
    assert 0.95 <= dt < 1.8, dt
    assert "reason=timeout" in a.log_text()


def test_queue_full_and_stuck_workers(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users, workers="1", **{
        "queue-limit": "2", "timeout": "3s"}))])
    c = a.client()
    hang = c.send_auth("hang1", "x")   # occupies the only worker
    wait_until(lambda: len(os.listdir(helper_users[1])) >= 1, 20, "helper start")
    c.send_auth("dave", "dave-pw")     # queued
    c.send_auth("dave", "dave-pw")     # queued
    t0 = time.monotonic()
    r = c.auth("dave", "dave-pw", timeout=1.0)   # queue full: answered at once
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "overloaded"
    assert time.monotonic() - t0 < 1.0
    # the hung one times out after 3 s; the queued ones either time out too
    # or, when the freed worker reaches them just in time, succeed
    got = {}
    for _ in range(3):
        r = c.read_reply(timeout=10)
        got[r.id] = r.kv.get("reason", r.cmd)
    assert got.pop(hang) == "timeout"
    assert set(got.values()) <= {"timeout", "OK"}


def test_stuck_worker_refuses_then_recovers(authd_factory, tmp_path):
    # An argon2id hash with 256 MiB and t=4 takes far longer than the 100 ms
    # timeout: the only worker is stuck in it past its deadline.
    slow = subprocess.run(["argon2", "saltsaltsalt", "-id", "-t", "4", "-m", "18", "-p", "1",
                           "-e"], input=b"right", capture_output=True, check=True)
    path = tmp_path / "users"
    path.write_text("slowhash:{ARGON2ID}%s\nbob:{PLAIN}bob-pw\n"
                    % slow.stdout.decode().strip())
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "workers": "1",
                               "timeout": "100ms"})])
    c = a.client()
    assert c.auth("slowhash", "wrong", timeout=10).kv["reason"] == "timeout"
    # stuck once it is 100 ms past the deadline (the grace for a worker
    # that honours it and is on its way back)
    wait_until(lambda: a.metric("authd_workers_stuck", authenticator="pw") == 1, 10,
               "worker stuck", interval=0.02)
    t0 = time.monotonic()
    r = c.auth("bob", "bob-pw", timeout=5)
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "overloaded", r
    assert time.monotonic() - t0 < 0.1       # refused at once, not queued
    # when the hash finishes the worker is back, with no restart
    wait_until(lambda: c.auth("bob", "bob-pw", timeout=5).cmd == "OK", 20,
               "recovery", interval=0.05)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rindex(")") + 2] != "Z"
    except OSError:
        return False


def test_helper_killed_and_respawned(authd_factory, helper_users):
    users, piddir = helper_users
    a = authd_factory([("ext", ext_auth(helper_users, workers="1", timeout="1s"))])
    c = a.client()
    r = c.auth("fork1", "x", timeout=10)
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "timeout"
    helpers = [int(n.split(".")[1]) for n in os.listdir(piddir) if n.startswith("helper.")]
    grandchildren = [int(n.split(".")[1]) for n in os.listdir(piddir)
                     if n.startswith("grandchild.")]
    assert len(helpers) == 1 and len(grandchildren) == 1
    # the helper and its own child are killed (process group), and reaped
    wait_until(lambda: not pid_alive(helpers[0]) and not pid_alive(grandchildren[0]), 10,
               "helper and grandchild gone")
    wait_until(lambda: all(p != helpers[0] for p, _ in a.children()), 10, "reaped")
    # the next request gets a fresh helper
    assert c.auth("dave", "dave-pw").cmd == "OK"
    helpers2 = [n for n in os.listdir(piddir) if n.startswith("helper.")]
    assert len(helpers2) == 2
    # crash and garbage: TEMPFAIL, helper replaced, nothing left behind
    assert c.auth("crash1", "x").kv["reason"] == "unavailable"
    assert c.auth("garbage1", "x").kv["reason"] == "unavailable"
    assert c.auth("dave", "dave-pw").cmd == "OK"
    assert [s for _, s in a.children() if s == "Z"] == []
    assert len(a.children()) == 1


def test_checkpassword(authd_factory, tmp_path, helper_users):
    users, _ = helper_users
    a = authd_factory([("chk", {"type": "checkpassword", "workers": "4", "timeout": "2s",
                                "program": "%s %s/checkpw.py %s" % (PYTHON, HELPERS, users)})])
    c = a.client()
    r = c.auth("carol", "carol-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "2001" and r.kv["home"] == "/home/carol"
    assert c.auth("carol", "nope").cmd == "FAIL"
    assert c.auth("temp1", "x").kv["reason"] == "unavailable"
    assert c.auth("weird1", "x").cmd == "TEMPFAIL"
    t0 = time.monotonic()
    assert c.auth("slow10", "x", timeout=10).kv["reason"] == "timeout"
    assert time.monotonic() - t0 < 4
    # A program that reads fd 3 to EOF must not wait for a slow sibling
    # (fd 3's write end is never inherited by other children).
    slow = a.client()
    slow.send_auth("slow1.5", "x")
    t0 = time.monotonic()
    for _ in range(5):
        assert c.auth("dave", "dave-pw", timeout=10).cmd == "OK"
    assert time.monotonic() - t0 < 1.4
    assert slow.read_reply(timeout=10).cmd == "FAIL"
    wait_until(lambda: a.children() == [], 10, "no checkpassword process left")


def test_plain_mechanism_and_errors(authd_factory, pwfile):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile})])
    c = a.client()
    rid = c.send_plain("alice", "alice-pw")
    r = c.read_reply()
    assert r.id == rid and r.cmd == "OK"
    c.send_plain("alice", "alice-pw", authzid="bob")
    assert c.read_reply().cmd == "ERROR"
    c.send_raw(b"AUTH\t7\tservice=pop3\tmech=PLAIN\tresp=%%%notbase64\n")
    r = c.read_reply()
    assert r.cmd == "ERROR" and r.id == "7" and "base64" in r.kv["reason"]
    c.send_raw(b"AUTH\t8\tservice=pop3\tuser=alice\n")
    assert c.read_reply().cmd == "ERROR"
    c.send_raw(b"AUTH\t9\tservice=pop3\tuser=a\tuser=b\tpass=x\n")
    assert c.read_reply().kv["reason"] == "duplicate key"
    c.send_raw(b"AUTH\tbad id!\tservice=pop3\tuser=a\tpass=b\n")
    assert c.read_reply().cmd == "ERROR"
    # unknown keys are ignored
    r = c.auth("bob", "bob-pw", foo="bar")
    assert r.cmd == "OK"
    # an empty password never reaches a backend
    assert c.auth("bob", "").cmd == "FAIL"
    # the connection survived all of it
    assert c.auth("alice", "alice-pw").cmd == "OK"


@pytest.mark.parametrize("garbage", [
    b"HELLO\n",                               # no VERSION first
    b"VERSION\t1\t0\nAUTH\t1\tuser=a\0b\tpass=x\n",   # NUL byte
    b"VERSION\t1\t0\n" + b"A" * 10000 + b"\n",        # over-long line
    b"VERSION\t1\t0\nAUTH\t1\tservice=pop3\tuser=\\q\tpass=x\n",   # bad escape
    b"VERSION\t1\t0\nFROB\t1\n",              # unknown command
    b"VERSION\t2\t0\n",                       # unsupported version
])
def test_garbage_closes_only_that_connection(authd_factory, pwfile, garbage):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile})])
    good = a.client()
    fds = a.fds()
    bad = AuthdClient(a.socket, handshake=False)
    bad.send_raw(garbage)
    assert bad.closed(10), "authd kept a broken connection open"
    bad.close()
    assert good.auth("alice", "alice-pw").cmd == "OK"
    wait_until(lambda: a.fds() == fds, 5, "fd count back to %d" % fds)


def test_thousands_pipelined_and_disconnects(authd_factory, pwfile, helper_users):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile,
                               "queue-limit": "4000", "per-source-limit": "4000"}),
                       ("ext", ext_auth(helper_users, timeout="5s"))])
    fds = a.fds()
    c = a.client()
    n = 3000
    payload = "".join("AUTH\t%d\tservice=pop3\tuser=bob\tpass=%s\n"
                      % (i, "bob-pw" if i % 3 else "no") for i in range(n))
    sender = threading.Thread(target=c.send_raw, args=(payload.encode(),))
    sender.start()
    seen = {}
    for _ in range(n):
        r = c.read_reply(timeout=60)
        seen[int(r.id)] = r.cmd
    sender.join()
    assert len(seen) == n
    assert all(seen[i] == ("OK" if i % 3 else "FAIL") for i in range(n))
    # clients that vanish mid-request, some with requests at a hung helper
    for i in range(20):
        d = a.client()
        d.send_auth("alice", "alice-pw")
        d.send_auth("hang%d" % i, "x")
        d.close()
    # CANCEL: no reply ever comes for a cancelled id
    c.send_auth("slow0.3", "x", rid="c1")
    c.send_raw(b"CANCEL\tc1\n")
    assert c.auth("bob", "bob-pw").cmd == "OK"
    assert not c.pending(1.0)
    c.close()
    # What stays: a helper that answered (slow0.3, when its job started
    # before the CANCEL) lives on, with its two pipes and its pidfd.
    # Helpers killed at a deadline and clients gone leave nothing.
    def released():
        helpers = [pid for pid, state in a.children() if state != "Z"]
        return a.fds() <= fds + 2 + 3 * len(helpers)
    try:
        wait_until(released, 15, "descriptors released")
    except AssertionError:
        fd_dir = "/proc/%d/fd" % a.proc.pid
        held = sorted(os.readlink(os.path.join(fd_dir, f)) for f in os.listdir(fd_dir))
        raise AssertionError("descriptors not released: %d at start, now %s; children %s"
                             % (fds, held, a.children()))
    assert a.proc.poll() is None


def test_queue_limit_answers_every_pipelined_request(authd_factory, pwfile):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile, "workers": "1",
                               "queue-limit": "8"})])
    c = a.client()
    n = 500
    c.send_raw("".join("AUTH\t%d\tservice=pop3\tuser=alice\tpass=alice-pw\n" % i
                       for i in range(n)).encode())
    got = {}
    for _ in range(n):
        r = c.read_reply(timeout=60)
        got[r.cmd if r.cmd == "OK" else r.kv.get("reason")] = \
            got.get(r.cmd if r.cmd == "OK" else r.kv.get("reason"), 0) + 1
    assert set(got) == {"OK", "overloaded"} and sum(got.values()) == n, got


def test_passwd_file_reload_under_load(authd_factory, tmp_path):
    path = str(tmp_path / "users")
    write_passwd(path, [("frank", "{PLAIN}old", 1), ("gina", "{PLAIN}gina-pw", 2)])
    a = authd_factory([("pw", {"type": "passwd-file", "path": path, "workers": "2"})])
    stop = threading.Event()
    errors = []

    def load():
        c = a.client()
        while not stop.is_set():
            r = c.auth("gina", "gina-pw", timeout=10)
            if r.cmd != "OK":
                errors.append(r)
        c.close()
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    c = a.client()
    try:
        assert c.auth("frank", "old").cmd == "OK"
        write_passwd(path, [("frank", "{SHA256-CRYPT}" + subprocess.check_output(
            ["openssl", "passwd", "-5", "new"], text=True).strip(), 1),
            ("gina", "{PLAIN}gina-pw", 2), ("bad line without colon", "", 0)])
        wait_until(lambda: c.auth("frank", "new").cmd == "OK", 10, "reload", interval=0.05)
        assert c.auth("frank", "old").cmd == "FAIL"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert "loaded 2 users" in a.log_text()


def test_malformed_passwd_lines_skipped(authd_factory, tmp_path):
    path = tmp_path / "users"
    path.write_text("# comment\n\nnocolon\n:emptyuser\nhenry:{PLAIN}h-pw:notanumber\n"
                    "ivan:{NOSUCH}x\njane:{PLAIN}j-pw:7:7::/home/jane::maildrop=maildir:/m/jane\n"
                    + "long:" + "x" * 5000 + "\n")
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path)})])
    r = a.client().auth("jane", "j-pw")
    assert r.cmd == "OK" and r.kv["maildrop"] == "maildir:/m/jane"
    log = a.log_text()
    for lineno in (3, 4, 5, 6, 8):
        assert "users:%d:" % lineno in log, lineno
    assert a.client().auth("henry", "h-pw").cmd == "FAIL"


def test_ticket_redeemed_once_by_its_process(authd_factory, pwfile):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile})])
    c = a.client()
    r = c.auth("alice", "alice-pw")
    ticket = r.kv["ticket"]
    assert len(ticket) == 32
    # wrong pid: refused (and burnt)
    assert master_redeem(a.master_socket, ticket, os.getpid() + 1).cmd == "NOTFOUND"
    assert master_redeem(a.master_socket, ticket, os.getpid()).cmd == "NOTFOUND"
    t2 = c.auth("alice", "alice-pw").kv["ticket"]
    u = master_redeem(a.master_socket, t2, os.getpid())
    assert u.cmd == "USER" and u.kv["user"] == "alice" and u.kv["uid"] == "1001"
    assert master_redeem(a.master_socket, t2, os.getpid()).cmd == "NOTFOUND"
    assert master_redeem(a.master_socket, "zz" * 16, os.getpid()).cmd == "NOTFOUND"


def test_tickets_only_for_connections_that_can_redeem_them(authd_factory, pwfile):
    """A ticket goes with an OK only to a connection that a pop3d front end
    could be behind: not to authctl test, not to an administration
    connection, not to one that said tickets=no in its handshake."""
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile})])
    r = authctl(a, "test", "alice", password="alice-pw")
    assert r.returncode == 0, r.stderr
    assert a.metric("authd_tickets_outstanding") == 0
    for hello in (b"VERSION\t1\t0\ttickets=no\n", b"VERSION\t1\t0\tadmin=yes\n"):
        c = AuthdClient(a.socket, handshake=False)
        c.send_raw(hello)
        v = c.read_reply()
        assert v.cmd == "VERSION" and v.kv["tickets"] == "no", v
        r = c.auth("alice", "alice-pw")
        assert r.cmd == "OK" and "ticket" not in r.kv, r
        c.close()
    assert a.metric("authd_tickets_outstanding") == 0
    # what a pop3d front end sends (no tickets key), or tickets=yes
    for hello in (b"VERSION\t1\t0\n", b"VERSION\t1\t0\ttickets=yes\n"):
        c = AuthdClient(a.socket, handshake=False)
        c.send_raw(hello)
        assert c.read_reply().kv["tickets"] == "yes"
        assert len(c.auth("alice", "alice-pw").kv["ticket"]) == 32
        c.close()
    assert a.metric("authd_tickets_outstanding") == 2
    # a malformed value is a broken handshake
    c = AuthdClient(a.socket, timeout=10, handshake=False)
    c.send_raw(b"VERSION\t1\t0\ttickets=maybe\n")
    assert c.closed()
    c.close()


def test_username_normalisation(authd_factory, tmp_path):
    path = str(tmp_path / "users")
    write_passwd(path, [("kim@example.org", "{PLAIN}k", 9)])
    a = authd_factory([("pw", {"type": "passwd-file", "path": path})],
                      extra="lowercase-usernames = yes\ndefault-domain = Example.ORG\n")
    c = a.client()
    r = c.auth("  KIM ", "k")
    assert r.cmd == "OK" and r.kv["user"] == "kim@example.org"
    assert c.auth("kim\x01", "k").cmd == "FAIL"


def test_require_secured(authd_factory, pwfile):
    a = authd_factory([("pw", {"type": "passwd-file", "path": pwfile,
                               "require-secured": "yes"})], cache={})
    c = a.client()
    assert c.auth("alice", "alice-pw", secured="yes").cmd == "OK"
    # the same right password over a connection that is not secured: refused,
    # even though a cached OK exists for it
    assert c.auth("alice", "alice-pw", secured="no").cmd == "FAIL"
    assert c.auth("alice", "alice-pw").cmd == "FAIL"
    assert "not secured" in a.log_text()
    assert c.auth("alice", "alice-pw", secured="yes").cmd == "OK"


def test_helper_killed_while_idle_is_replaced_first(authd_factory, helper_users):
    users, piddir = helper_users
    a = authd_factory([("ext", ext_auth(helper_users, workers="1"))])
    c = a.client()
    assert c.auth("dave", "dave-pw").cmd == "OK"
    pid = int([n for n in os.listdir(piddir) if n.startswith("helper.")][0].split(".")[1])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, "helper dead")
    # the next request gets a new helper, not a TEMPFAIL
    assert c.auth("dave", "dave-pw").cmd == "OK"
    assert "exited while idle" in a.log_text()
