"""The multi-host fixture (issue 17, item 3): three complete hosts on
loopback, each its own authd and pop3d with its own sockets, its own
configuration and its own address (127.0.0.2-4), sharing two memcached
servers (the L2 cache) and one mail store, behind a real HAProxy (TCP
mode, send-proxy-v2, round robin, health checks as PROXY LOCAL) on
127.0.0.1.  Clients connect to HAProxy from their own loopback addresses
(127.0.0.10, ...), so that what each host logs, limits on and sends to
authd can be told from HAProxy's address.

docs/cluster.md's HAProxy configuration is the one written here."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from authdlib import descendants, recv_all, wait_until
from conftest import Authd, authctl
from pop3lib import Client, MailRoot, Pop3d, free_port, passwd_line
from test_l2 import Memcached
import test_proxy_protocol
from test_proxy_protocol import HAPROXY

pytestmark = pytest.mark.threaded

HOST_ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
USERS = ["alice", "bob", "carol"] + ["u%d" % i for i in range(12)]

# docs/cluster.md, "A cluster behind HAProxy": the same text, with this
# fixture's addresses and ports.
HAPROXY_CFG = """\
global
    maxconn 2000
    stats socket {dir}/haproxy.sock mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    # a host that refuses the connection: try another one
    retries 2
    option redispatch

frontend pop3
    bind 127.0.0.1:{port}
    default_backend pop3d

backend pop3d
    balance roundrobin
{servers}
"""
SERVER_LINE = ("    server {name} {addr}:{port} send-proxy-v2 check check-send-proxy "
               "inter 200ms fall 2 rise 2\n")


class Host:
    """One host: authd (L2 on the shared memcacheds) and pop3d, whose
    PROXY protocol port is on the host's own address and whose plain port
    on 127.0.0.1 is only for the readiness check."""

    def __init__(self, name, addr, tmp, users_file, servers, keyfile, pop3d_keys=None):
        self.name = name
        self.addr = addr
        d = tmp / name
        d.mkdir()
        self.authd = Authd(d, [("pw", {"type": "passwd-file", "path": str(users_file)})],
                           cache={"positive-ttl": "1h", "memcached": servers,
                                  "cluster-key-file": str(keyfile),
                                  "flush-poll-interval": "100ms"})
        self.authd.start()
        plain, self.pp_port = free_port(), free_port()
        k = {"listen": "127.0.0.1:%d, %s:%d" % (plain, addr, self.pp_port),
             "proxy-protocol": "%s:%d" % (addr, self.pp_port),
             "proxy-trusted-networks": "127.0.0.1/32",
             "proxy-timeout": "2s"}
        k.update(pop3d_keys or {})
        self.pop3d = Pop3d(self.authd, d, k)
        self.pop3d.port = plain
        self.pop3d.start()
        wait_until(self.master_connected, 10, "%s: pop3d's master connected to authd" % name)

    def master_connected(self):
        r = authctl("-s", self.authd.socket, "who")
        return r.returncode == 0 and "no pop3d is connected" not in r.stdout

    def who(self):
        r = authctl("-s", self.authd.socket, "who")
        assert r.returncode == 0, (r.stdout, r.stderr)
        return [line.split() for line in r.stdout.splitlines()
                if line and not line.startswith("USER") and not re.match(r"\d+ sessions?$", line)]

    def kill(self):
        """The host dies at once: pop3d's processes and authd, SIGKILL."""
        for pid in descendants(self.pop3d.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.authd.proc.kill()
        self.pop3d.proc.wait(10)
        self.authd.proc.wait(10)

    def stop(self):
        if self.pop3d.proc.poll() is None:
            self.pop3d.stop()
        else:
            self.pop3d.logf.close()
        if self.authd.proc.poll() is None:
            self.authd.stop()
        else:
            self.authd.logf.close()


class Haproxy(test_proxy_protocol.Haproxy):
    """The test_proxy_protocol one (its stop()), with this fixture's
    configuration, stats socket and view of the servers' states."""

    def __init__(self, tmp, hosts):
        self.dir = str(tmp)
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.log = os.path.join(self.dir, "haproxy.log")
        self.sock = os.path.join(self.dir, "haproxy.sock")
        servers = "".join(SERVER_LINE.format(name=h.name, addr=h.addr, port=h.pp_port)
                          for h in hosts)
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG.format(dir=self.dir, port=self.port, servers=servers))
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg],
                                     stdout=self.logf, stderr=self.logf)

    def admin(self, command):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(self.sock)
        s.sendall(command.encode() + b"\n")
        out = recv_all(s)
        s.close()
        return out.decode()

    def status(self):
        """{server name: UP/DOWN/...} from HAProxy's own view."""
        out = {}
        try:
            text = self.admin("show stat")
        except OSError:
            return out
        for line in text.splitlines():
            f = line.split(",")
            if len(f) > 17 and f[0] == "pop3d" and f[1] not in ("BACKEND", "FRONTEND"):
                out[f[1]] = f[17]
        return out



class Via(Client):
    """A POP3 client of HAProxy's (or of a host's) from a chosen loopback
    address."""

    def __init__(self, port, source, host="127.0.0.1", greet=True, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.received = 0
        self.timeout = timeout
        self.greeting = self.line() if greet else None


def login(c, user, pw=None):
    assert c.cmd("USER " + user) == "+OK"
    return c.cmd("PASS " + (pw or user + "-pw"))


@pytest.fixture
def cluster(tmp_path):
    """make(n=3, **pop3d_keys) -> (hosts, haproxy, mailroot)."""
    if HAPROXY is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is not installed (CI must have it: Debian package haproxy)")
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    mcs, hosts, proxies = [], [], []
    mail = MailRoot()

    def make(n=3, **pop3d_keys):
        mcs.extend([Memcached(), Memcached()])
        keyfile = tmp_path / "cluster.key"
        keyfile.write_bytes(os.urandom(32))
        os.chmod(keyfile, 0o600)
        users = tmp_path / "users"
        lines = ""
        for u in USERS:
            md = mail.maildir(u, [("new/1.M1.h", b"Subject: %s\n\nhello\n" % u.encode())])
            lines += passwd_line(u, u + "-pw", os.path.dirname(md))
        users.write_text(lines)
        keys = {k.replace("_", "-"): v for k, v in pop3d_keys.items()}
        keys.setdefault("max-connections-per-ip", "50")
        for i in range(n):
            hosts.append(Host("h%d" % (i + 1), HOST_ADDRS[i], tmp_path, users,
                              ", ".join(m.addr for m in mcs), keyfile, keys))
        h = Haproxy(tmp_path, hosts)
        proxies.append(h)

        def all_up():
            if h.proc.poll() is not None:
                raise AssertionError("haproxy exited:\n" + open(h.log).read())
            st = h.status()
            return len(st) == n and all(v == "UP" for v in st.values())
        wait_until(all_up, 20, "haproxy sees every host up")
        return hosts, h, mail
    make.memcacheds = mcs
    yield make
    for h in proxies:
        h.stop()
    for host in hosts:
        host.stop()
    for m in mcs:
        m.close()
    mail.cleanup()


def host_of(hosts, user):
    """The host whose pop3d serves user's session now."""
    for h in hosts:
        if any(r[0] == user for r in h.who()):
            return h
    return None


# ---- the tests ---------------------------------------------------------------

def test_logins_spread_over_hosts_with_the_clients_address(cluster):
    hosts, hp, _ = cluster()
    for i in range(6):
        c = Via(hp.port, "127.0.0.10")
        assert c.greeting.startswith("+OK")
        assert login(c, "u%d" % i).startswith("+OK Logged in")
        assert c.cmd("QUIT").startswith("+OK")
    for h in hosts:
        # round robin: two logins per host, each logged with the client's
        # address; HAProxy's (127.0.0.1) is never taken for a client's
        log = h.pop3d.wait_log(r"logout: user=u\d+ rip=127\.0\.0\.10 ", count=2)
        assert not re.search(r"login: user=\S+ rip=127\.0\.0\.1 ", log)
        alog = open(h.authd.log).read()
        assert len(re.findall(r"auth ok: user=u\d+ service=\S+ rip=127\.0\.0\.10 ", alog)) == 2
    # a session's client address, as who shows it
    c = Via(hp.port, "127.0.0.11")
    assert login(c, "alice").startswith("+OK")
    h = host_of(hosts, "alice")
    row = [r for r in h.who() if r[0] == "alice"][0]
    assert row[1] == "127.0.0.11:%d" % c.sock.getsockname()[1]


def test_per_ip_limit_and_failure_delay_per_real_client(cluster):
    hosts, hp, _ = cluster(max_connections_per_ip="1", auth_failure_delay="2s")
    # one connection per host from 127.0.0.10; the fourth lands on a host
    # that has one from that address already
    a = [Via(hp.port, "127.0.0.10") for _ in range(3)]
    assert all(c.greeting.startswith("+OK") for c in a), [c.greeting for c in a]
    fourth = Via(hp.port, "127.0.0.10")
    assert fourth.greeting == "-ERR [SYS/TEMP] Too many connections from your address"
    # another client is not limited with it, and logs in while the first
    # one waits out its failure delay
    bad = a[0]
    assert bad.cmd("USER alice") == "+OK"
    t0 = time.monotonic()
    bad.send("PASS wrong\r\n")
    good = Via(hp.port, "127.0.0.12")
    assert login(good, "bob").startswith("+OK Logged in")
    assert time.monotonic() - t0 < 1.5
    assert bad.line() == "-ERR [AUTH] Authentication failed"
    assert time.monotonic() - t0 >= 1.9
    refused = sum(len(re.findall(r"refused 127\.0\.0\.10 \(through 127\.0\.0\.1\): "
                                 r"max-connections-per-ip", h.pop3d.log_text()))
                  for h in hosts)
    assert refused == 1


def test_untrusted_peer_header_refused(cluster):
    hosts, hp, _ = cluster(n=2)
    h = hosts[0]
    # straight to the host's PROXY port, from an address that is not the
    # balancer's: closed before a byte is read, and counted
    hdr = b"PROXY TCP4 10.9.8.7 127.0.0.2 4000 110\r\n"
    c = Via(h.pp_port, "127.0.0.10", host=h.addr, greet=False)
    c.send(hdr)
    assert c.closed(5) and c.buf == b""
    wait_until(lambda: h.pop3d.metric("pop3d_connections_refused_total",
                                      reason="proxy_untrusted") == 1, 10, "counted")
    assert "10.9.8.7" not in h.pop3d.log_text()


def test_kick_on_one_host_ends_a_session_on_another_within_a_second(cluster):
    hosts, hp, mail = cluster()
    c = Via(hp.port, "127.0.0.10")
    assert login(c, "alice").startswith("+OK Logged in")
    assert c.cmd("DELE 1").startswith("+OK")
    on = host_of(hosts, "alice")
    other = [h for h in hosts if h is not on][0]
    t0 = time.monotonic()
    r = authctl("-s", other.authd.socket, "kick", "alice")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "ended 0 sessions of alice on this host" in r.stdout, r.stdout
    assert "cluster: 2 of 2 memcached servers took the kick" in r.stdout, r.stdout
    assert c.closed(1.0), "the session on %s outlived the kick by 1 s" % on.name
    assert time.monotonic() - t0 < 1.0
    on.pop3d.wait_log(r"session user=alice pid=\d+ ended by a kick")
    # authd logs it once its pop3d master has answered: soon, not at once
    wait_until(lambda: re.search(r"kick: user alice \(from the cluster\): ended 1 sessions",
                                 open(on.authd.log).read()), 10, "authd's kick line")
    # no DELE without QUIT, and nobody else was kicked by the echo of the
    # kick in every server's log
    md = os.path.join(mail.path, "alice", "Maildir")
    assert os.listdir(os.path.join(md, "new")) + os.listdir(os.path.join(md, "cur"))
    c2 = Via(hp.port, "127.0.0.10")
    assert login(c2, "alice").startswith("+OK Logged in")
    # several flush-log polls on every host: nothing may kick it now
    for h in hosts:
        polls = h.authd.metric("authd_l2_polls_total")
        wait_until(lambda: h.authd.metric("authd_l2_polls_total") >= polls + 4, 10, "polls")
    assert c2.cmd("NOOP").startswith("+OK")
    # a kick is applied once: the same record written again (a replay by
    # whoever can write to memcached) kicks nobody
    m = cluster.memcacheds[0]
    seq = int(m.get("authd:s").strip())
    rec = m.get("authd:f:%d" % seq)
    assert rec and b"k=" in rec
    m.set("authd:f:%d" % (seq + 1), rec)
    assert m.cmd(b"incr authd:s 1\r\n", b"\r\n").strip() == str(seq + 1).encode()
    polls = on.authd.metric("authd_l2_polls_total")
    wait_until(lambda: on.authd.metric("authd_l2_polls_total") >= polls + 6, 10, "polls")
    assert c2.cmd("NOOP").startswith("+OK")
    assert on.authd.metric("authd_l2_kicks_total", event="received") == 1
    # the kick's record names nobody in the clear
    dump = {}
    for m in cluster.memcacheds:
        dump.update(m.dump())
    records = [v for k, v in dump.items() if k.startswith("authd:f:")]
    assert records and all(b"k=" in v for v in records), records
    blob = b"\n".join(k.encode() + b"=" + (v or b"") for k, v in dump.items())
    assert b"alice" not in blob and b"alice".hex().encode() not in blob


def test_flush_kick_reaches_every_host(cluster):
    hosts, hp, _ = cluster()
    sessions = {}
    for u in ("u1", "u2", "u3"):
        c = Via(hp.port, "127.0.0.10")
        assert login(c, u).startswith("+OK")
        sessions[u] = c
    other = [h for h in hosts if h is not host_of(hosts, "u2")][0]
    r = authctl("-s", other.authd.socket, "flush", "--kick", "u2")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "cluster: 2 of 2 memcached servers took the flush and kick" in r.stdout, r.stdout
    assert sessions["u2"].closed(1.0)
    for u in ("u1", "u3"):
        assert sessions[u].cmd("NOOP").startswith("+OK")


def test_host_killed_under_load(cluster):
    """Logins through HAProxy go on while one host is killed: once
    HAProxy's health check has taken it out, every login succeeds."""
    hosts, hp, _ = cluster()
    stop = threading.Event()
    results = []        # (time, ok, detail)
    lock = threading.Lock()

    def worker(users, source):
        i = 0
        while not stop.is_set() and i < 2000:
            u = users[i % len(users)]
            i += 1
            t = time.monotonic()
            try:
                c = Via(hp.port, source, timeout=5)
                r = login(c, u)
                ok = r.startswith("+OK") and c.cmd("STAT").startswith("+OK") and \
                    c.cmd("QUIT").startswith("+OK")
                c.close()
                detail = r
            except (OSError, EOFError, AssertionError) as e:
                ok, detail = False, repr(e)
            with lock:
                results.append((t, ok, detail))
    # disjoint users per worker: a maildrop serves one session at a time
    ws = [threading.Thread(target=worker, args=(USERS[k::4], "127.0.0.%d" % (10 + k)))
          for k in range(4)]
    for w in ws:
        w.start()
    wait_until(lambda: sum(1 for r in results if r[1]) >= 40, 30, "logins before the kill")
    victim = hosts[1]
    victim.kill()
    t_kill = time.monotonic()
    wait_until(lambda: hp.status().get(victim.name) == "DOWN", 10, "haproxy marks it down")
    t_down = time.monotonic()
    n_down = len(results)
    wait_until(lambda: len(results) >= n_down + 60, 30, "logins after the check")
    stop.set()
    for w in ws:
        w.join(30)
    after = [r for r in results if r[0] > t_down]
    failed = [r for r in after if not r[1]]
    assert len(after) >= 60
    assert failed == [], failed[:5]
    # and before the check noticed, only logins that were on the victim
    # could fail (at most the workers' in-flight ones, retried by nobody)
    between = [r for r in results if t_kill <= r[0] <= t_down and not r[1]]
    assert len(between) <= len(ws) * 2, between
    # the survivors served them all
    for h in (hosts[0], hosts[2]):
        assert h.pop3d.proc.poll() is None and h.authd.proc.poll() is None
