"""authd's saslauthd-compatible socket ([authd] saslauthd-socket) driven by
Cyrus SASL's own client, testsaslauthd (Debian sasl2-bin): right and wrong
passwords, a hung backend that does not hold up another authenticator's
users, the socket's mode, and hostile requests (raw socket)."""

import os
import shutil
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

from conftest import ext_auth, helper_calls

TESTSASLAUTHD = shutil.which("testsaslauthd") or "/usr/sbin/testsaslauthd"

pytestmark = pytest.mark.skipif(not os.path.exists(TESTSASLAUTHD),
                                reason="testsaslauthd missing (Debian sasl2-bin: "
                                       "scripts/install-deps)")


def run_testsaslauthd(path, user, password, service="smtp", realm=None, timeout=30):
    cmd = [TESTSASLAUTHD, "-f", path, "-u", user, "-p", password, "-s", service]
    if realm is not None:
        cmd += ["-r", realm]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def start(authd_factory, tmp_path, authenticators, cache=None, extra=""):
    sock = str(tmp_path / "mux")
    a = authd_factory(authenticators, extra="saslauthd-socket = %s\n%s" % (sock, extra),
                      cache=cache)
    a.sasl = sock
    return a


def passwd(tmp_path, lines):
    p = tmp_path / "users"
    p.write_text("".join(lines))
    return str(p)


def test_right_and_wrong_password(authd_factory, tmp_path):
    pw = passwd(tmp_path, ["bob:{PLAIN}bob-pw:1002\n"])
    a = start(authd_factory, tmp_path, [("pw", {"type": "passwd-file", "path": pw})])
    r = run_testsaslauthd(a.sasl, "bob", "bob-pw")
    assert r.returncode == 0 and 'OK "Success."' in r.stdout, r
    r = run_testsaslauthd(a.sasl, "bob", "Wr0ng-Pa55")
    assert r.returncode != 0 and "NO" in r.stdout, r
    r = run_testsaslauthd(a.sasl, "nobody-here", "bob-pw")
    assert r.returncode != 0 and "NO" in r.stdout, r
    # the realm is ignored, as saslauthd without -r does
    r = run_testsaslauthd(a.sasl, "bob", "bob-pw", realm="example.org")
    assert r.returncode == 0, r
    log = a.log_text()
    assert "auth ok: user=bob service=smtp" in log
    assert "auth failed: user=bob service=smtp" in log
    assert "bob-pw" not in log and "Wr0ng-Pa55" not in log
    # the socket: mode 0660 by default (saslauthd-socket-mode)
    assert stat.S_IMODE(os.stat(a.sasl).st_mode) == 0o660


def test_socket_mode(authd_factory, tmp_path):
    pw = passwd(tmp_path, ["bob:{PLAIN}bob-pw\n"])
    a = start(authd_factory, tmp_path, [("pw", {"type": "passwd-file", "path": pw})],
              extra="saslauthd-socket-mode = 0600\n")
    assert stat.S_IMODE(os.stat(a.sasl).st_mode) == 0o600
    assert run_testsaslauthd(a.sasl, "bob", "bob-pw").returncode == 0
    a.stop()
    assert not os.path.exists(a.sasl), "socket left behind at shutdown"


def test_hung_backend_isolated(authd_factory, tmp_path, helper_users):
    """A backend that hangs costs its own users a NO after its timeout;
    a user of another authenticator is answered at once meanwhile."""
    pw = passwd(tmp_path, ["bob:{PLAIN}bob-pw\n"])
    a = start(authd_factory, tmp_path,
              [("pw", {"type": "passwd-file", "path": pw}),
               ("ext", ext_auth(helper_users, timeout="3s"))])
    results = {}

    def hung(i):
        t = time.monotonic()
        results[i] = (run_testsaslauthd(a.sasl, "hang%d" % i, "x"), time.monotonic() - t)

    threads = [threading.Thread(target=hung, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    # wait until the hung requests are in the helpers
    deadline = time.monotonic() + 10
    while len([u for u in helper_calls(helper_users) if u.startswith("hang")]) < 2:
        assert time.monotonic() < deadline, "hung requests never reached the helpers"
        time.sleep(0.02)
    t0 = time.monotonic()
    r = run_testsaslauthd(a.sasl, "bob", "bob-pw")
    took = time.monotonic() - t0
    assert r.returncode == 0, r
    assert took < 1.0, "bob waited %.2fs behind a hung authenticator" % took
    for t in threads:
        t.join(30)
    for i, (res, secs) in results.items():
        assert res.returncode != 0 and "NO" in res.stdout, res
        assert secs < 10, secs
    assert "reason=timeout" in a.log_text()


def test_cache_hit_counts_one_backend_call(authd_factory, tmp_path, helper_users):
    a = start(authd_factory, tmp_path, [("ext", ext_auth(helper_users))],
              cache={"positive-ttl": "5m"})
    for _ in range(3):
        r = run_testsaslauthd(a.sasl, "carol", "carol-pw")
        assert r.returncode == 0, r
    assert helper_calls(helper_users) == ["carol"]


def raw(path, data, timeout=10, shutdown=False):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(data)
    if shutdown:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            out += d
    except socket.timeout:
        out += b"<timeout>"
    s.close()
    return out


def counted(*fields):
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def test_hostile_requests(authd_factory, tmp_path):
    pw = passwd(tmp_path, ["bob:{PLAIN}bob-pw\n"])
    a = start(authd_factory, tmp_path, [("pw", {"type": "passwd-file", "path": pw})])
    ok = counted(b"bob", b"bob-pw", b"smtp", b"")
    assert raw(a.sasl, ok) == counted(b"OK")
    # the fifth string (the client's address) of newer clients
    assert raw(a.sasl, counted(b"bob", b"bob-pw", b"smtp", b"", b"192.0.2.7;25")) \
        == counted(b"OK")
    assert "rip=192.0.2.7" in a.log_text()
    # too long, a NUL inside, bytes after the request: NO, and closed
    for bad in (counted(b"x" * 400, b"pw", b"smtp", b""),
                counted(b"bob", b"p" * 2000, b"smtp", b""),
                counted(b"bob", b"bob\0pw", b"smtp", b""),
                counted(b"bob", b"bob-pw", b"SMTP!", b""),
                ok + counted(b"addr") + b"junk"):
        reply = raw(a.sasl, bad)
        assert reply.startswith(struct.pack(">H", len(reply) - 2) + b"NO"), (bad, reply)
    # a length that promises more than comes: closed at the client's EOF
    assert raw(a.sasl, struct.pack(">H", 200) + b"abc", shutdown=True) == b""
    # authd is still fine
    assert run_testsaslauthd(a.sasl, "bob", "bob-pw").returncode == 0
