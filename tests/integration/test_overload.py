"""Overload and floods (issue 15): the real authd with a slow external
helper (bench/slow-helper) and the real pop3d on 127.0.0.1, attacked from
other loopback addresses (127.0.0.2, ...) by many concurrent connections
sending wrong passwords, while a legitimate client logs in."""

import os
import random
import re
import socket
import threading
import time

import pytest

from conftest import PYTHON, REPO
from pop3lib import IS_ROOT, TEST_GID, Client, user_uid
from test_pop3d import mailroot, world  # noqa: F401 (fixtures)

SLOW_HELPER = os.path.join(REPO, "bench", "slow-helper")


def slow_world(world, tmp_path, delay, workers, pop3d_keys=None, auth_keys=None):
    """pop3d in front of authd whose one authenticator is bench/slow-helper:
    each check of a known user (alice, bob) takes `delay` seconds."""
    db = tmp_path / "slow-db"
    keys = {"type": "external", "workers": str(workers), "timeout": "5s",
            "program": "%s %s %s %s" % (PYTHON, SLOW_HELPER, db, delay)}
    keys.update(auth_keys or {})
    pk = {"max-connections-per-ip": "200", "max-connections": "1000"}
    pk.update(pop3d_keys or {})
    p = world(users={"alice": [("new/1.a", b"Subject: a\n\na\n")], "bob": []},
              auths=[("slow", keys)], pop3d_keys=pk, start=False)
    gid = TEST_GID if IS_ROOT else os.getgid()
    db.write_text("".join("%s %s-pw %d %d %s\n" % (u, u, user_uid(), gid,
                                                  os.path.dirname(p.maildirs[u]))
                          for u in ("alice", "bob")))
    p.start()
    return p


class Flood:
    """`conns` connections from each of `addrs` (loopback addresses), each
    looping USER bob / PASS <random> and reconnecting when closed, until
    stop().  Records how long each -ERR [SYS/TEMP] answer took."""

    def __init__(self, port, addrs, conns):
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.attempts = 0
        self.tempfail_times = []
        self.closed_early = 0   # closed for failures with < 3 of them FAIL
        self.threads = [threading.Thread(target=self.run, args=(a,), daemon=True)
                        for a in addrs for _ in range(conns)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "attacker threads hang"

    def run(self, addr):
        # bounded: every wait has a timeout and the loop ends at stop()
        while not self.stopping.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                             source_address=(addr, 0))
            except OSError:
                self.stopping.wait(0.05)
                continue
            f = s.makefile("rwb")
            fails = 0
            try:
                if not f.readline().startswith(b"+OK"):
                    continue
                while not self.stopping.is_set():
                    f.write(b"USER bob\r\n")
                    f.flush()
                    line = f.readline()
                    if line.startswith(b"-ERR Too many failed logins") and fails < 3:
                        with self.lock:
                            self.closed_early += 1
                    if not line.startswith(b"+OK"):
                        break
                    t0 = time.monotonic()
                    f.write(b"PASS %08x\r\n" % random.getrandbits(32))
                    f.flush()
                    line = f.readline()
                    took = time.monotonic() - t0
                    fails += line.startswith(b"-ERR [AUTH]")
                    with self.lock:
                        self.attempts += 1
                        if line.startswith(b"-ERR [SYS/TEMP]"):
                            self.tempfail_times.append(took)
                    if not line.startswith(b"-ERR"):
                        break
                    # "-ERR Too many failed logins" follows the last one
            except OSError:
                pass
            finally:
                f.close()
                s.close()


def legit_logins(port, n, limit):
    """n uncached logins of alice from 127.0.0.1, one after the other:
    (accepted, latencies of the accepted ones)."""
    ok, times = 0, []
    for _ in range(n):
        c = Client(port, timeout=10)
        try:
            assert c.cmd("USER alice") == "+OK"
            t0 = time.monotonic()
            r = c.cmd("PASS alice-pw")
            took = time.monotonic() - t0
            if r.startswith("+OK") and took < limit:
                ok += 1
                times.append(took)
            if r.startswith("+OK"):
                c.cmd("QUIT")
        finally:
            c.close()
    return ok, times


@pytest.mark.threaded
def test_flood_from_other_addresses_does_not_stop_legitimate_logins(world, tmp_path):
    """90 connections from 3 addresses keep authd's queue full of slow
    wrong-password checks (2 workers, 0.1 s each: 20 checks/s against
    about 90 waiting).  First come, first served, every legitimate login
    waited behind the whole flood (several seconds, or a timeout); served
    in turn by source, it waits behind one request per attacking address.
    The per-source limit refuses the rest of the flood: those TEMPFAILs
    come after auth-failure-delay, count towards max-auth-failures, and
    authd logs them as summaries, not a line each."""
    p = slow_world(world, tmp_path, delay=0.1, workers=2,
                   pop3d_keys={"auth-failure-delay": "300ms", "max-auth-failures": "3"},
                   auth_keys={"per-source-limit": "12"})
    flood = Flood(p.port, ["127.0.0.%d" % i for i in (2, 3, 4)], 30).start()
    try:
        # the flood is on: authd's queue holds many of its requests
        def queue_full():
            return p.authd.metric("authd_queue_depth", authenticator="slow") >= 20
        deadline = time.monotonic() + 20
        while not queue_full():
            assert time.monotonic() < deadline, "the flood never filled the queue"
            time.sleep(0.05)
        n = 40
        ok, times = legit_logins(p.port, n, limit=1.5)
    finally:
        flood.stop()
    times.sort()
    assert ok >= 0.99 * n, "only %d of %d legitimate logins within 1.5 s (latencies %s)" % (
        ok, n, ["%.2f" % t for t in times])
    # the flood met the per-source limit; each such TEMPFAIL was delayed
    assert p.authd.metric("authd_authenticator_overloaded_total", authenticator="slow",
                          reason="source-limit") > 0
    assert flood.tempfail_times, "no overloaded TEMPFAIL reached the attacker"
    assert min(flood.tempfail_times) >= 0.25, sorted(flood.tempfail_times)[:5]
    assert p.metric("pop3d_logins_overloaded_total") > 0
    # ... and counted towards max-auth-failures: connections were closed
    # after 3 failed attempts of which some were such TEMPFAILs
    assert flood.closed_early > 0
    log = p.authd.log_text()
    # one full line when the burst started, then summaries every 10 s
    full = re.findall(r"auth tempfail: user=", log)
    summaries = re.findall(r"auth tempfail: authenticator=slow reason=overloaded: (\d+) more",
                           log)
    assert 1 <= len(full) <= 3, len(full)
    assert len(summaries) <= 6      # the test lasts well under a minute
    assert len(re.findall(r"authenticator overloaded: authenticator=", log)) <= 4
    # fail2ban's lines are kept, one per failure
    assert len(re.findall(r"auth failed: user=bob ", log)) > 10

