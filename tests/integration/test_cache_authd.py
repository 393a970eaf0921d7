"""The credential cache seen through the real authd: stale-if-error,
password changes, negative entries, coalescing, flush and the cache
report.  The external helper counts its calls (PIDDIR/calls)."""

import os
import subprocess
import threading
import time

import pytest

from authdlib import wait_until
from conftest import ext_auth, helper_calls, authctl

pytestmark = pytest.mark.threaded


def test_fresh_hit_skips_backend(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users))], cache={"positive-ttl": "1h"})
    c = a.client()
    for _ in range(20):
        r = c.auth("carol", "carol-pw")
        assert r.cmd == "OK" and r.kv["uid"] == "2001" and r.kv["home"] == "/home/carol"
        assert r.kv["authenticator"] == "ext" and len(r.kv["ticket"]) == 32
    assert helper_calls(helper_users) == ["carol"]
    # a different password is a miss, not a hit: the backend decides
    assert c.auth("carol", "other").cmd == "FAIL"
    assert helper_calls(helper_users) == ["carol", "carol"]
    out = authctl("-s", a.socket, "cache").stdout
    assert "hit ratio" in out and "ok_fresh" in out


def test_stale_if_error_when_helper_hangs(authd_factory, helper_users):
    # positive-ttl 0: never fresh, always asked; stale-usable for an hour
    a = authd_factory([("ext", ext_auth(helper_users, timeout="500ms"))],
                      cache={"positive-ttl": "0s", "stale-ttl": "1h"})
    c = a.client()
    assert c.auth("carol", "carol-pw").cmd == "OK"
    open(os.path.join(helper_users[1], "HANG"), "w").close()
    t0 = time.monotonic()
    r = c.auth("carol", "carol-pw", timeout=10)
    assert r.cmd == "OK" and r.kv["uid"] == "2001", r
    assert 0.45 < time.monotonic() - t0 < 3
    assert "stale-if-error" in a.log_text()
    # a wrong password is never answered from a stale positive entry
    assert c.auth("carol", "nope", timeout=10).kv.get("reason") == "timeout"
    # nor is a user without an entry
    assert c.auth("zed", "x", timeout=10).cmd == "TEMPFAIL"


def test_changed_password_takes_effect(authd_factory, tmp_path):
    path = tmp_path / "users"
    path.write_text("frank:{PLAIN}old:1:1::/h::\n")
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path)})],
                      cache={"positive-ttl": "1h"})
    c = a.client()
    assert c.auth("frank", "old").cmd == "OK"
    assert c.auth("frank", "old").cmd == "OK"       # now a cache hit
    path.write_text("frank:{PLAIN}newer:1:1::/h::\n")
    wait_until(lambda: "cache flushed" in a.log_text(), 10, "reload and flush", interval=0.05)
    # without the flush the old password would be a fresh hit for an hour
    assert c.auth("frank", "old").cmd == "FAIL"
    assert c.auth("frank", "newer").cmd == "OK"


def test_result_asked_before_a_flush_is_not_cached(authd_factory, tmp_path):
    """A check that started against the old file and ends after the
    change (and the flush) answers its client, but must not put the old
    password back into the cache."""
    slow = subprocess.run(["argon2", "saltsaltsalt", "-id", "-t", "10", "-m", "18", "-p", "1",
                           "-e"], input=b"right", capture_output=True, check=True)
    path = tmp_path / "users"
    path.write_text("gina:{ARGON2ID}%s:1:1::/h::\n" % slow.stdout.decode().strip())
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "timeout": "60s"})],
                      cache={"positive-ttl": "1h"})
    c = a.client()
    rid = c.send_auth("gina", "right")
    wait_until(lambda: a.metric("authd_in_flight", authenticator="pw") == 1,
               10, "the hash under way", interval=0.02)
    path.write_text("gina:{PLAIN}changed:1:1::/h::\n")
    wait_until(lambda: "cache flushed" in a.log_text(), 10, "reload and flush", interval=0.02)
    assert not c.pending(), "the hash ended before the flush: the test needs a slower one"
    r = c.read_reply(timeout=60)
    assert r.id == rid and r.cmd == "OK", r         # right when it was asked
    assert c.auth("gina", "right", timeout=60).cmd == "FAIL"
    assert c.auth("gina", "changed", timeout=60).cmd == "OK"


def test_wrong_password_storm_one_backend_call(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users))], cache={"negative-ttl": "1h"})
    c = a.client()
    for _ in range(50):
        assert c.auth("carol", "guess").cmd == "FAIL"
    assert helper_calls(helper_users) == ["carol"]
    # the right password is not shadowed by the negative entry
    assert c.auth("carol", "carol-pw").cmd == "OK"
    # unknown users are cached as well
    for _ in range(10):
        assert c.auth("nosuch", "x").cmd == "FAIL"
    assert helper_calls(helper_users) == ["carol", "carol", "nosuch"]


def test_hundred_concurrent_first_logins_one_call(authd_factory, helper_users):
    with open(os.path.join(helper_users[1], "DELAY"), "w") as f:
        f.write("0.3")
    a = authd_factory([("ext", ext_auth(helper_users, timeout="5s"))], cache={})
    clients = [a.client() for _ in range(10)]
    for cl in clients:
        for _ in range(10):
            cl.send_auth("carol", "carol-pw")
    results = [cl.read_reply(timeout=10).cmd for cl in clients for _ in range(10)]
    assert results == ["OK"] * 100
    assert helper_calls(helper_users) == ["carol"]
    assert "coalesced        99" in authctl("-s", a.socket, "cache").stdout


def test_late_result_fills_cache(authd_factory, tmp_path):
    # The only worker spends ~1 s on an argon2id hash, far past the 100 ms
    # timeout: the client gets TEMPFAIL, and the late answer still lands in
    # the cache, so the next login is answered from it.
    slow = subprocess.run(["argon2", "saltsaltsalt", "-id", "-t", "4", "-m", "18", "-p", "1",
                           "-e"], input=b"right", capture_output=True, check=True)
    path = tmp_path / "users"
    path.write_text("slowhash:{ARGON2ID}%s:7:7::/h::\n" % slow.stdout.decode().strip())
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "workers": "1",
                               "timeout": "100ms"})], cache={"positive-ttl": "1h"})
    c = a.client()
    assert c.auth("slowhash", "right", timeout=5).kv["reason"] == "timeout"
    wait_until(lambda: c.auth("slowhash", "right", timeout=5).cmd == "OK", 20,
               "late fill", interval=0.1)
    assert "late_fills       1" in authctl("-s", a.socket, "cache").stdout


def test_flush_all_and_permissions(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users))], cache={"positive-ttl": "1h"})
    c = a.client()
    assert c.auth("carol", "carol-pw").cmd == "OK"
    r = authctl("-s", a.socket, "flush")
    assert r.returncode == 0 and "flushed 1 entries" in r.stdout
    assert c.auth("carol", "carol-pw").cmd == "OK"
    assert helper_calls(helper_users) == ["carol", "carol"]
    r = authctl("-s", a.socket, "flush", "bad\x01name")
    assert r.returncode != 0


def test_cache_disabled_per_authenticator(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users, cache="no"))], cache={})
    c = a.client()
    for _ in range(3):
        assert c.auth("carol", "carol-pw").cmd == "OK"
    assert helper_calls(helper_users) == ["carol"] * 3
