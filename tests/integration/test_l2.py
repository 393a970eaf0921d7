"""The shared cache in memcached (L2, authd/l2.c; docs/cluster.md), with
real memcached processes and several real authd "hosts" on one machine:
each host has its own sockets, configuration and external helper (which
counts its calls in PIDDIR/calls), and all share the memcached servers and
the cluster key."""

import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse

import pytest

from authdlib import wait_until
from conftest import Authd, HELPERS, PYTHON, authctl, BUILD, sanitizer_env
from pop3lib import free_port

pytestmark = pytest.mark.threaded

MEMCACHED = "/usr/bin/memcached"


class Memcached:
    """A memcached process on a loopback port."""

    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        cmd = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16",
               "-t", "1"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, 10, "memcached on port %d" % self.port)

    def _answers(self):
        try:
            self.cmd(b"version\r\n", b"\r\n")
            return True
        except OSError:
            return False

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def cmd(self, data, until, timeout=5):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            buf = b""
            while not buf.endswith(until):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf
        finally:
            s.close()

    def get(self, key):
        out = self.cmd(b"get " + key.encode() + b"\r\n", b"END\r\n")
        if not out.startswith(b"VALUE "):
            return None
        header, rest = out.split(b"\r\n", 1)
        n = int(header.split()[3])
        return rest[:n]

    def set(self, key, value, exptime=0):
        out = self.cmd(b"set %s 0 %d %d\r\n" % (key.encode(), exptime, len(value)) + value
                       + b"\r\n", b"\r\n")
        assert out == b"STORED\r\n", out

    def keys(self):
        out = self.cmd(b"lru_crawler metadump all\r\n", b"END\r\n")
        keys = []
        for line in out.decode().splitlines():
            if line.startswith("key="):
                keys.append(urllib.parse.unquote(line.split()[0][4:]))
        return keys

    def dump(self):
        return {k: self.get(k) for k in self.keys()}

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop_signal(self, sig):
        self.proc.send_signal(sig)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


# ---- the cluster key, as authd derives it (cache/seal.c) -----------------

def kdf(master, subkey_id, ctx=b"authdL2c"):
    """libsodium's crypto_kdf_derive_from_key (BLAKE2b, 32-byte subkey)."""
    salt = struct.pack("<Q", subkey_id) + b"\0" * 8
    return hashlib.blake2b(b"", digest_size=32, key=master, salt=salt,
                           person=ctx + b"\0" * 8).digest()


def counted(s):
    return struct.pack("<Q", len(s)) + s


def user_key(master, user, scope=b"chain"):
    return hashlib.blake2b(counted(scope) + counted(user.encode()), digest_size=32,
                           key=kdf(master, 1)).digest()


def verifier(master, user, password):
    k = user_key(master, user)
    return hashlib.blake2b(k + password.encode(), digest_size=32, key=kdf(master, 2)).digest()


# ---- fixtures -------------------------------------------------------------

@pytest.fixture
def memcacheds():
    ms = [Memcached(), Memcached()]
    yield ms
    for m in ms:
        m.close()


USERS = "".join("user%d:pw%d:%d:/home/user%d\n" % (i, i, 3000 + i, i) for i in range(60))


@pytest.fixture
def cluster(tmp_path, memcacheds):
    """make(name, **cache) starts one authd host sharing the memcacheds."""
    key = os.urandom(32)
    keyfile = tmp_path / "cluster.key"
    keyfile.write_bytes(key)
    os.chmod(keyfile, 0o600)
    users = tmp_path / "users"
    users.write_text(USERS)
    hosts = []

    def make(name, key_path=None, servers=None, timeout="5s", first=None, **cache):
        d = tmp_path / name
        d.mkdir()
        piddir = d / "pids"
        piddir.mkdir()
        keys = {"positive-ttl": "1h", "memcached": servers or ", ".join(m.addr for m in memcacheds),
                "cluster-key-file": str(key_path or keyfile), "flush-poll-interval": "100ms"}
        keys.update(cache)
        a = Authd(d, (first or []) + [
            ("ext", {"type": "external", "workers": "2", "timeout": timeout,
                     "program": "%s %s/ext_helper.py %s %s" % (PYTHON, HELPERS, users, piddir)})],
            cache=keys)
        a.piddir = str(piddir)
        hosts.append(a)
        a.start()
        # Ready for L2 once every server has an epoch (the control
        # thread's first poll gives it one).
        wait_until(lambda: all(m.get("authd:e") for m in memcacheds), 10, "epochs")
        return a

    make.key = key
    make.keyfile = keyfile
    make.users = users
    yield make
    for a in hosts:
        if a.proc is not None:
            a.stop()


def calls(host):
    try:
        with open(os.path.join(host.piddir, "calls")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


# ---- tests ----------------------------------------------------------------

def test_second_host_logs_in_without_a_backend_call(cluster, memcacheds):
    a = cluster("a")
    b = cluster("b")
    ca, cb = a.client(), b.client()
    for i in range(20):
        assert ca.auth("user%d" % i, "pw%d" % i).cmd == "OK"
    assert len(calls(a)) == 20
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 20, 10, "puts")
    # concurrently from four connections: each user once per connection
    results = []

    def worker():
        c = b.client()
        for i in range(20):
            r = c.auth("user%d" % i, "pw%d" % i)
            results.append((r.cmd, r.kv.get("uid"), r.kv.get("home")))
    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sorted(results) == sorted(("OK", str(3000 + i), "/home/user%d" % i)
                                     for i in range(20) for _ in range(4))
    assert calls(b) == [], "host b asked its backend although L2 had the answers"
    assert b.metric("authd_l2_answers_total", source="fresh") == 20
    # a wrong password is not answered from L2: b's backend decides
    assert cb.auth("user1", "wrong").cmd == "FAIL"
    assert calls(b) == ["user1"]
    out = authctl("-s", b.socket, "cache").stdout
    assert "L2 (memcached)" in out and memcacheds[0].addr in out and " up " in out, out


def test_flush_on_one_host_reaches_the_other_within_a_second(cluster, tmp_path):
    a = cluster("a")
    b = cluster("b")
    ca, cb = a.client(), b.client()
    assert ca.auth("user5", "pw5").cmd == "OK"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 1, 10, "a's put")
    assert cb.auth("user5", "pw5").cmd == "OK"          # from L2, now in b's L1
    assert cb.auth("user5", "pw5").cmd == "OK"          # an L1 hit: no network
    assert calls(b) == []
    # the password changes in the backend, and host a is told
    cluster.users.write_text(USERS.replace("user5:pw5:", "user5:new5:"))
    r = authctl("-s", a.socket, "flush", "user5")
    t0 = time.monotonic()
    assert r.returncode == 0, r.stderr
    assert "2 of 2 memcached servers" in r.stdout, r.stdout
    wait_until(lambda: cb.auth("user5", "pw5").cmd == "FAIL", 1.0,
               "the old password refused on host b", interval=0.02)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0
    # and it stays refused, on both hosts, from every cache
    for c in (ca, cb):
        assert c.auth("user5", "pw5").cmd == "FAIL"
        assert c.auth("user5", "new5").cmd == "OK"
    assert b.metric("authd_l2_flushes_applied_total", scope="user") >= 1


def test_flush_all_reaches_the_other_host(cluster):
    a = cluster("a")
    b = cluster("b")
    ca, cb = a.client(), b.client()
    assert ca.auth("user6", "pw6").cmd == "OK"
    assert cb.auth("user6", "pw6").cmd == "OK"
    cluster.users.write_text(USERS.replace("user6:pw6:", "user6:new6:"))
    r = authctl("-s", a.socket, "flush")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: cb.auth("user6", "pw6").cmd == "FAIL", 1.0, "old password refused",
               interval=0.02)
    # b may have refused it first from its own look at the changed file;
    # the cluster's flush reaches it within a poll all the same
    wait_until(lambda: b.metric("authd_l2_flushes_applied_total", scope="all") >= 1, 1.0,
               "b applied the cluster flush", interval=0.02)


def test_passwd_file_change_seen_by_one_host_reaches_the_other(cluster, tmp_path):
    """Host a reads a passwd-file (its watcher flushes on a change); host b
    asks a helper that flushes nothing.  Without the cluster flush b would
    answer the old password from its L1 for an hour."""
    pwfile = tmp_path / "passwd"
    pwfile.write_text("user7:{PLAIN}pw7:3007:3007::/home/user7::\n")
    os.chmod(pwfile, 0o600)
    d = tmp_path / "a"
    d.mkdir()
    a = Authd(d, [("ext", {"type": "passwd-file", "path": str(pwfile)})],
              cache={"positive-ttl": "1h", "flush-poll-interval": "100ms",
                     "memcached": "127.0.0.1:%d" % free_port(),  # replaced below
                     "cluster-key-file": str(cluster.keyfile)})
    # same memcached servers as the cluster's hosts
    b = cluster("b")
    servers = [l for l in open(b.conf) if l.startswith("memcached =")][0]
    text = "".join(servers if l.startswith("memcached =") else l for l in open(a.conf))
    open(a.conf, "w").write(text)
    a.start()
    try:
        ca, cb = a.client(), b.client()
        assert ca.auth("user7", "pw7").cmd == "OK"
        assert cb.auth("user7", "pw7").cmd == "OK"
        assert cb.auth("user7", "pw7").cmd == "OK"
        cluster.users.write_text(USERS.replace("user7:pw7:", "user7:new7:"))
        pwfile.write_text("user7:{PLAIN}new7:3007:3007::/home/user7::\n")
        wait_until(lambda: "cache flushed" in a.log_text(), 10, "a's watcher", interval=0.05)
        wait_until(lambda: cb.auth("user7", "pw7").cmd == "FAIL", 2.0,
                   "the old password refused on b", interval=0.02)
        assert cb.auth("user7", "new7").cmd == "OK"
    finally:
        a.stop()


def test_memcached_holds_no_name_password_or_verifier(cluster, memcacheds):
    a = cluster("a")
    c = a.client()
    names = ["user%d" % i for i in range(30)]
    for i, n in enumerate(names):
        assert c.auth(n, "pw%d" % i).cmd == "OK"
    assert c.auth("user1", "wrong-password").cmd == "FAIL"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 30, 10, "puts")
    dump = {}
    for m in memcacheds:
        dump.update(m.dump())
    assert len([k for k in dump if k.startswith("authd:a:")]) == 30
    # The names are the keyed user keys (this test derives them from the
    # cluster key as authd does), spread over both servers.
    for n in names:
        assert "authd:a:" + user_key(cluster.key, n).hex() in dump
    assert all(any(k.startswith("authd:a:") for k in m.keys()) for m in memcacheds)
    blob = b"\n".join(k.encode() + b"=" + (v or b"") for k, v in dump.items())
    for i, n in enumerate(names):
        for secret in (n, "pw%d" % i):
            assert secret.encode() not in blob, secret
        v = verifier(cluster.key, n, "pw%d" % i)
        for form in (v, v.hex().encode(), v[:8]):
            assert form not in blob, "verifier of %s in memcached" % n
    for home in ("/home/user%d" % i for i in range(30)):
        assert home.encode() not in blob


def test_tampered_and_foreign_values_are_refused(cluster, memcacheds, tmp_path):
    a = cluster("a")
    ca = a.client()
    for i in range(3):
        assert ca.auth("user%d" % i, "pw%d" % i).cmd == "OK"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 3, 10, "puts")
    by_name = {}
    for m in memcacheds:
        for k in m.keys():
            by_name[k] = m

    def name(user):
        return "authd:a:" + user_key(cluster.key, user).hex()
    # user0: one bit flipped in the ciphertext
    m0 = by_name[name("user0")]
    v = bytearray(m0.get(name("user0")))
    v[40] ^= 1
    m0.set(name("user0"), bytes(v))
    # user1: user2's (valid) value copied under user1's name
    m1 = by_name[name("user1")]
    m1.set(name("user1"), by_name[name("user2")].get(name("user2")))
    # user3: a value sealed by a host of another cluster (another key),
    # put where our cluster looks for user3
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    os.chmod(other, 0o600)
    x = cluster("x", key_path=other)
    assert x.client().auth("user3", "pw3").cmd == "OK"
    wait_until(lambda: x.metric("authd_l2_puts_total", result="ok") == 1, 10, "x's put")
    xname = "authd:a:" + user_key(open(other, "rb").read(), "user3").hex()
    xv = [m.get(xname) for m in memcacheds if m.get(xname)][0]
    for m in memcacheds:        # wherever ketama puts it, it is found
        m.set(name("user3"), xv)
    # user4: garbage
    for m in memcacheds:
        m.set(name("user4"), b"\x01" + os.urandom(80))
    b = cluster("b")
    cb = b.client()
    for i in range(5):
        assert cb.auth("user%d" % i, "pw%d" % i).cmd == "OK"
    # user2's own value is intact: the only one answered from L2
    assert sorted(calls(b)) == ["user0", "user1", "user3", "user4"]
    assert b.metric("authd_l2_refused_values_total", reason="seal") == 3
    assert b.metric("authd_l2_refused_values_total", reason="version") == 1   # too short
    assert b.metric("authd_l2_answers_total", source="fresh") == 1


def test_login_loop_survives_memcached_killed_frozen_restarted(cluster, memcacheds):
    a = cluster("a", **{"memcached-breaker-backoff": "1s", "positive-ttl": "10ms"})
    c = a.client()
    slow = []
    state = {"i": 0}

    def logins(n):
        # with a 10 ms fresh time, every login is an L1 miss that asks L2
        for _ in range(n):
            i = state["i"] % 60
            state["i"] += 1
            t0 = time.monotonic()
            r = c.auth("user%d" % i, "pw%d" % i, timeout=10)
            dt = time.monotonic() - t0
            assert r.cmd == "OK", r        # the backend would accept: so must we
            if dt > 0.04:
                slow.append(dt)
    logins(20)
    memcacheds[0].kill()
    logins(40)
    assert a.metric("authd_l2_errors_total") > 0
    timeouts = a.metric("authd_l2_errors_total", kind="timeout")
    memcacheds[1].stop_signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    logins(60)
    wait_until(lambda: a.metric("authd_l2_server_breaker_opens_total") >= 1, 5, "breaker open")
    frozen_for = time.monotonic() - t_stop
    # at most the breaker's failures before it opens, then one probe per
    # back-off period (1 s), each costing one timeout; counted by authd, so
    # that a login slow for another reason (a loaded machine) is not taken
    # for one (the control thread's polls of the frozen server count too)
    waited = a.metric("authd_l2_errors_total", kind="timeout") - timeouts
    assert 1 <= waited <= 3 + 2 * (int(frozen_for) + 2), (waited, frozen_for, slow)
    memcacheds[1].stop_signal(signal.SIGCONT)
    memcacheds[0].start()                  # restarted empty
    wait_until(lambda: a.metric("authd_l2_server_up") == 2, 10, "breakers closed",
               interval=0.1)
    # L2 is used again: both servers take entries without errors
    wait_until(lambda: all(m.get("authd:e") for m in memcacheds), 10, "epochs")
    errors = a.metric("authd_l2_errors_total")
    puts = a.metric("authd_l2_puts_total", result="ok")
    logins(30)
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") >= puts + 30, 10, "puts")
    assert a.metric("authd_l2_errors_total") == errors
    assert all(any(k.startswith("authd:a:") for k in m.keys()) for m in memcacheds)


def test_garbage_answering_server_is_a_miss(cluster, tmp_path):
    """A "memcached" that answers every request with garbage."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def serve():
        lsock.settimeout(0.1)
        conns = []
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
                conns.append(conn)
            except socket.timeout:
                pass
            for conn in list(conns):
                conn.setblocking(False)
                try:
                    if conn.recv(65536):
                        conn.sendall(b"VALUE authd:e 0 5\r\nxx\r\nEND\r\nGARBAGE 1 2 3\r\n")
                except (BlockingIOError, OSError):
                    pass
        for conn in conns:
            conn.close()
    t = threading.Thread(target=serve)
    t.start()
    try:
        d = tmp_path / "g"
        d.mkdir()
        host = Authd(d, [("ext", {"type": "external", "workers": "2", "timeout": "5s",
                                  "program": "%s %s/ext_helper.py %s %s" % (
                                      PYTHON, HELPERS, cluster.users, d)})],
                     cache={"positive-ttl": "1h", "memcached": "127.0.0.1:%d" % port,
                            "cluster-key-file": str(cluster.keyfile)})
        host.start()
        try:
            c = host.client()
            for i in range(10):
                assert c.auth("user%d" % i, "pw%d" % i, timeout=10).cmd == "OK"
            assert host.metric("authd_l2_answers_total") == 0
        finally:
            host.stop()
    finally:
        stop.set()
        t.join(5)
        lsock.close()


@pytest.mark.parametrize("mode,size,msg", [
    (0o640, 32, "must not be accessible by group or others"),
    (0o600, 31, "exactly 32 bytes"),
    (0o600, 0, "exactly 32 bytes"),
])
def test_bad_cluster_key_file_is_refused(tmp_path, mode, size, msg):
    key = tmp_path / "k"
    key.write_bytes(os.urandom(size))
    os.chmod(key, mode)
    a = Authd(tmp_path, [("ext", {"type": "external", "program": "/bin/true"})],
              cache={"memcached": "127.0.0.1:11211", "cluster-key-file": str(key)})
    for args in (["-t"], ["-f"]):
        r = subprocess.run([os.path.join(BUILD, "authd")] + args + ["-c", a.conf],
                           capture_output=True, text=True, timeout=30, env=sanitizer_env())
        assert r.returncode != 0 and msg in r.stderr + r.stdout, r


@pytest.mark.parametrize("cache,msg", [
    ({"memcached": "127.0.0.1:11211"}, "needs cluster-key-file"),
    ({"memcached": "127.0.0.1", "cluster-key-file": "/k"}, "bad server"),
    ({"memcached": "[::1:11211", "cluster-key-file": "/k"}, "bad"),
    ({"memcached": "bad host:1", "cluster-key-file": "/k"}, "bad"),
    ({"cluster-key-file": "/k"}, "memcached is not"),
    ({"memcached": "127.0.0.1:11211", "cluster-key-file": "/k", "flush-poll-interval": "2s"},
     "flush-poll-interval"),
])
def test_bad_memcached_settings_are_refused(tmp_path, cache, msg):
    a = Authd(tmp_path, [("ext", {"type": "external", "program": "/bin/true"})], cache=cache)
    r = subprocess.run([os.path.join(BUILD, "authd"), "-t", "-c", a.conf],
                       capture_output=True, text=True, timeout=30, env=sanitizer_env())
    assert r.returncode != 0 and msg in r.stderr, r


def test_key_rotation_reads_the_previous_key_and_rewrites(cluster, memcacheds, tmp_path):
    a = cluster("a")                                   # the old key only
    assert a.client().auth("user10", "pw10").cmd == "OK"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 1, 10, "a's put")
    new = os.urandom(32)
    both = tmp_path / "both.key"
    both.write_bytes(new + cluster.key)                # current, then previous
    os.chmod(both, 0o600)
    b = cluster("b", key_path=both)
    assert b.client().auth("user10", "pw10").cmd == "OK"
    assert calls(b) == [], "the entry sealed under the previous key was not used"
    new_name = "authd:a:" + user_key(new, "user10").hex()
    wait_until(lambda: any(m.get(new_name) for m in memcacheds), 10, "rewritten entry")
    newonly = tmp_path / "new.key"
    newonly.write_bytes(new)
    os.chmod(newonly, 0o600)
    c = cluster("c", key_path=newonly)
    assert c.client().auth("user10", "pw10").cmd == "OK"
    assert calls(c) == []
    # a flush on the rotating host reaches hosts on either key
    assert a.client().auth("user10", "pw10").cmd == "OK"
    cluster.users.write_text(USERS.replace("user10:pw10:", "user10:new10:"))
    assert authctl("-s", b.socket, "flush", "user10").returncode == 0
    for h in (a, c):
        cl = h.client()
        wait_until(lambda: cl.auth("user10", "pw10").cmd == "FAIL", 1.0, "flush on " + h.dir,
                   interval=0.02)


def test_service_chains_in_l2_and_across_a_key_rotation(cluster, memcacheds, tmp_path):
    """A chain per service (authenticators' `services`): hosts share the
    entries of one chain, under the previous cluster key too, and never
    hand one chain's entry to another."""
    empty = tmp_path / "imap-users"
    empty.write_text("")
    os.chmod(empty, 0o600)
    first = [("imaponly", {"type": "passwd-file", "path": str(empty), "services": "imap"})]
    # pop3 and smtp: ext alone; imap: imaponly, then ext (the whole chain)
    a = cluster("a", first=first)
    assert a.client().auth("user10", "pw10").cmd == "OK"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 1, 10, "a's put")
    new = os.urandom(32)
    both = tmp_path / "both.key"
    both.write_bytes(new + cluster.key)
    os.chmod(both, 0o600)
    b = cluster("b", key_path=both, first=first)
    cb = b.client()
    r = cb.auth("user10", "pw10", service="smtp")
    assert r.cmd == "OK" and r.kv["authenticator"] == "ext", r
    assert calls(b) == [], "pop3's entry (smtp's chain too), under the previous key, not used"
    r = cb.auth("user10", "pw10", service="imap")
    assert r.cmd == "OK" and r.kv["authenticator"] == "ext", r
    assert calls(b) == ["user10"], "imap's chain was answered from another chain's entry"


def test_stale_if_backend_down_from_l2(cluster):
    a = cluster("a", **{"positive-ttl": "200ms", "stale-ttl": "1h"})
    assert a.client().auth("user11", "pw11").cmd == "OK"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 1, 10, "a's put")
    time.sleep(0.25)            # the entry is now past fresh: only stale-usable
    b = cluster("b", timeout="500ms", **{"positive-ttl": "200ms", "stale-ttl": "1h"})
    open(os.path.join(b.piddir, "HANG"), "w").close()
    cb = b.client()
    r = cb.auth("user11", "pw11", timeout=20)
    assert r.cmd == "OK" and r.kv["uid"] == "3011", r
    assert "shared cache entry (stale-if-error)" in b.log_text()
    # never for another password
    assert cb.auth("user11", "other", timeout=20).cmd == "TEMPFAIL"


def test_flush_that_misses_a_server_says_so(cluster, memcacheds):
    a = cluster("a")
    assert a.client().auth("user12", "pw12").cmd == "OK"
    wait_until(lambda: a.metric("authd_l2_puts_total", result="ok") == 1, 10, "a's put")
    name = "authd:a:" + user_key(cluster.key, "user12").hex()
    holder = [m for m in memcacheds if m.get(name)][0]
    holder.stop_signal(signal.SIGSTOP)
    try:
        r = authctl("-s", a.socket, "flush", "user12")
        assert r.returncode == 75, r
        assert "1 of 2 memcached servers" in r.stdout and "did not reach" in r.stderr, r
    finally:
        holder.stop_signal(signal.SIGCONT)
    # with both servers answering, the same flush is complete
    wait_until(lambda: a.metric("authd_l2_server_up") == 2, 10, "breakers closed", interval=0.1)
    r = authctl("-s", a.socket, "flush", "user12")
    assert r.returncode == 0 and "2 of 2" in r.stdout, r
