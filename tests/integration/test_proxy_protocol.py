"""pop3d behind a load balancer (issue 17, item 1): the PROXY protocol, v1
and v2, on listen and listen-tls.  Raw headers from a Python client bound to
a loopback address playing the balancer (127.0.0.2, the only trusted one),
then the real HAProxy (Debian's haproxy, started here with a generated
config, TCP mode, send-proxy and send-proxy-v2) in front of the real pop3d
and authd, with clients bound to 127.0.0.5 and 127.0.0.6: the address pop3d
logs, limits on and sends to authd (rip=) is the client's."""

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

from authdlib import wait_until
from pop3lib import Client, free_port
# the pop3d suite's fixtures and messages, the TLS suite's test CA
from test_pop3d import mailroot, world  # noqa: F401
from test_tls import pki  # noqa: F401

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
BALANCER = "127.0.0.2"          # the one address in proxy-trusted-networks


def v1(src, dst="127.0.0.1", sport=40000, dport=110):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src=None, dst="127.0.0.1", sport=40000, dport=110, tlvs=b"", local=False):
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)
    af = socket.AF_INET6 if ":" in src else socket.AF_INET
    body = (socket.inet_pton(af, src) + socket.inet_pton(af, dst) +
            struct.pack(">HH", sport, dport) + tlvs)
    return V2_SIG + bytes([0x21, 0x21 if af == socket.AF_INET6 else 0x11]) + \
        struct.pack(">H", len(body)) + body


class From(Client):
    """A raw POP3 client whose socket is bound to a chosen loopback address
    (the balancer, or a client of HAProxy's), which may send bytes (a PROXY
    header) before it reads the greeting."""

    def __init__(self, port, source, header=b"", greet=True, timeout=10, tls=None,
                 server_hostname="localhost"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.received = 0
        self.timeout = timeout
        if header:
            self.sock.sendall(header)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        self.greeting = self.line() if greet else None


def proxied_world(world, **keys):
    """pop3d with a plain port for its readiness check and a second,
    PROXY protocol one; returns (pop3d, proxy port)."""
    plain, pp = free_port(), free_port()
    k = {"listen": "127.0.0.1:%d, 127.0.0.1:%d" % (plain, pp),
         "proxy-protocol": "127.0.0.1:%d" % pp,
         "proxy-trusted-networks": BALANCER + "/32",
         "proxy-timeout": "1s"}
    k.update({key.replace("_", "-"): v for key, v in keys.items()})
    p = world(pop3d_keys=k, start=False)
    p.port = plain
    p.start()
    return p, pp


def login(c, user="alice", pw="alice-pw"):
    assert c.cmd("USER " + user) == "+OK"
    return c.cmd("PASS " + pw)


def fe_metric(p, want, name, **labels):
    """Waits for a front-end counter to reach want (front ends send theirs
    to the master once a second)."""
    wait_until(lambda: p.metric(name, **labels) == want, 10,
               "%s%r == %s" % (name, labels, want))


def refused_silently(c):
    """The server closed c without sending a byte."""
    assert c.closed(10), "connection still open"
    assert c.buf == b"", "the server sent %r" % c.buf


# ---- raw headers ------------------------------------------------------------------


def test_v1_header_gives_the_client_address(world):
    p, pp = proxied_world(world)
    c = From(pp, BALANCER, v1("192.0.2.7", sport=40001))
    assert c.greeting.startswith("+OK")
    assert login(c, pw="wrong") == "-ERR [AUTH] Authentication failed"
    assert login(c).startswith("+OK Logged in")
    assert c.cmd("QUIT").startswith("+OK")
    log = p.wait_log(r"logout: user=alice rip=192\.0\.2\.7 ")
    assert re.search(r"login failed: user=alice rip=192\.0\.2\.7 method=USER", log)
    assert re.search(r"login: user=alice rip=192\.0\.2\.7 method=USER", log)
    # authd got the client's address too (PAM_RHOST, LDAP, helpers)
    alog = p.authd.log_text()
    assert re.search(r"auth failed: user=alice service=\S+ rip=192\.0\.2\.7 ", alog)
    assert re.search(r"auth ok: user=alice service=\S+ rip=192\.0\.2\.7 ", alog)
    assert BALANCER not in alog
    fe_metric(p, 1, "pop3d_proxy_headers_total", result="ok")


def test_v2_header_ipv6_with_tlvs_and_pipelined_bytes(world):
    """A v2 header with TLVs, and the client's first command in the same
    segment: the header is taken, not a byte more."""
    p, pp = proxied_world(world)
    tlvs = b"\x04\x00\x03abc" + b"\x02\x00\x0bexample.org"     # NOOP, AUTHORITY
    c = From(pp, BALANCER, v2("2001:db8::7", "2001:db8::1", 5555, 110, tlvs) +
             b"CAPA\r\n")
    assert c.greeting.startswith("+OK")
    assert c.line() == "+OK Capability list follows"
    c.multiline()
    assert login(c).startswith("+OK Logged in")
    assert c.cmd("QUIT").startswith("+OK")
    p.wait_log(r"logout: user=alice rip=2001:db8::7 ")
    assert re.search(r"auth ok: user=alice service=\S+ rip=2001:db8::7 ", p.authd.log_text())


def test_local_and_unknown_use_the_balancer_address(world):
    """v2 LOCAL (HAProxy's health checks) and v1 UNKNOWN: the connection is
    the balancer's own."""
    p, pp = proxied_world(world)
    for hdr in (v2(local=True), b"PROXY UNKNOWN\r\n",
                b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"):
        c = From(pp, BALANCER, hdr)
        assert c.greeting.startswith("+OK")
        assert login(c, pw="wrong") == "-ERR [AUTH] Authentication failed"
        c.close()
    p.wait_log(r"login failed: user=alice rip=127\.0\.0\.2 ", count=3)
    fe_metric(p, 3, "pop3d_proxy_headers_total", result="local")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 110\n",              # no CR
    b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 110 7\r\n",          # a field too many
    b"PROXY TCP6 192.0.2.7 127.0.0.1 40000 110\r\n",            # family
    b"PROXY TCP4 192.0.2.777 127.0.0.1 40000 110\r\n",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 70000 110\r\n",
    b"PROXY " + b"A" * 120 + b"\r\n",                             # over 107 bytes
    b"USER alice\r\n",                                          # no header at all
    V2_SIG + b"\x22\x11\x00\x0c" + b"\0" * 12,                  # v2, command 2
    V2_SIG + b"\x21\x12\x00\x0c" + b"\0" * 12,                  # v2 over UDP
    V2_SIG + b"\x21\x11\x00\x0b" + b"\0" * 11,                  # address block short
    V2_SIG + b"\x21\x11\x02\x00",                               # 512 + 16 > the bound
    V2_SIG + b"\x21\x11\x00\x10" + b"\0" * 12 + b"\x04\x00\x09x",   # TLV past the end
])
def test_malformed_header_closes_silently(world, header):
    p, pp = proxied_world(world)
    c = From(pp, BALANCER, header, greet=False)
    refused_silently(c)
    wait_until(lambda: p.metric("pop3d_proxy_headers_total", result="malformed") == 1, 10,
               "the refusal counted")
    assert re.search(r"PROXY header refused: peer=127\.0\.0\.2 reason=malformed: ",
                     p.log_text())
    # the balancer itself is not penalised: the next good header works
    assert From(pp, BALANCER, v1("192.0.2.8")).greeting.startswith("+OK")


def test_truncated_header_times_out_or_ends(world):
    p, pp = proxied_world(world)
    full = v1("192.0.2.7")
    t0 = time.monotonic()
    c = From(pp, BALANCER, full[:20], greet=False)
    refused_silently(c)
    assert time.monotonic() - t0 < 5                    # proxy-timeout = 1s
    c = From(pp, BALANCER, v2("192.0.2.7")[:14], greet=False)
    refused_silently(c)
    c = From(pp, BALANCER, full[:20], greet=False)
    c.sock.shutdown(socket.SHUT_WR)                     # the rest never comes
    refused_silently(c)
    wait_until(lambda: p.metric("pop3d_proxy_headers_total", result="timeout") == 2 and
               p.metric("pop3d_proxy_headers_total", result="closed") == 1, 10,
               "two timeouts and one early close counted")
    assert re.search(r"reason=timeout: no complete header within proxy-timeout",
                     p.log_text())


def test_header_split_over_segments(world):
    """A header that comes in pieces is put together (the bytes taken so far
    are the header's), then the greeting."""
    p, pp = proxied_world(world)
    hdr = v2("192.0.2.9", tlvs=b"\x04\x00\x01z")
    c = From(pp, BALANCER, hdr[:5], greet=False)
    for i in range(5, len(hdr), 7):
        time.sleep(0.05)
        c.send(hdr[i:i + 7])
    assert c.line().startswith("+OK")
    assert login(c).startswith("+OK Logged in")
    p.wait_log(r"login: user=alice rip=192\.0\.2\.9 ")


def test_untrusted_peer_refused_unread(world):
    """Only 127.0.0.2 may send headers: from 127.0.0.1 (a client reaching
    the PROXY port directly and claiming any address) the connection is
    closed at once, before a byte is read, counted and logged."""
    p, pp = proxied_world(world)
    c = From(pp, "127.0.0.1", v1("192.0.2.66"), greet=False)
    refused_silently(c)
    assert p.metric("pop3d_connections_refused_total", reason="proxy_untrusted") == 1
    assert p.metric("pop3d_proxy_headers_total") == 0
    log = p.log_text()
    assert "refused 127.0.0.1: not in proxy-trusted-networks" in log
    assert "192.0.2.66" not in log


def test_refusals_are_logged_rate_limited(world):
    p, pp = proxied_world(world, login_processes="1")
    for _ in range(40):
        From(pp, BALANCER, b"GARBAGE\r\n", greet=False).close()
        From(pp, "127.0.0.1", b"", greet=False).close()
    wait_until(lambda: p.metric("pop3d_proxy_headers_total", result="malformed") == 40, 10,
               "40 malformed headers counted")
    assert p.metric("pop3d_connections_refused_total", reason="proxy_untrusted") == 40
    log = p.log_text()
    # 10 a second each; the test takes well under 4 s
    assert len(re.findall(r"PROXY header refused", log)) < 40
    assert len(re.findall(r"not in proxy-trusted-networks", log)) < 40


def test_per_ip_limit_applies_per_real_client(world):
    """max-connections-per-ip = 2: a third connection of one client behind
    the balancer is refused, while other clients of the same balancer
    (five connections from 127.0.0.2 in all) are served."""
    p, pp = proxied_world(world, max_connections_per_ip="2")
    a1 = From(pp, BALANCER, v1("192.0.2.1", sport=1))
    a2 = From(pp, BALANCER, v1("192.0.2.1", sport=2))
    a3 = From(pp, BALANCER, v1("192.0.2.1", sport=3))
    assert a1.greeting.startswith("+OK") and a2.greeting.startswith("+OK")
    assert a3.greeting == "-ERR [SYS/TEMP] Too many connections from your address"
    assert a3.closed()
    b1 = From(pp, BALANCER, v1("192.0.2.2", sport=4))
    b2 = From(pp, BALANCER, v2("192.0.2.2", sport=5))
    assert b1.greeting.startswith("+OK") and b2.greeting.startswith("+OK")
    assert re.search(r"refused 192\.0\.2\.1 \(through 127\.0\.0\.2\): "
                     r"max-connections-per-ip \(2\) reached", p.log_text())
    # the refused one is not counted: once a1 ends, 192.0.2.1 has room again
    a1.cmd("QUIT")
    a1.closed()
    wait_until(lambda: From(pp, BALANCER, v1("192.0.2.1", sport=6)).greeting.startswith("+OK"),
               10, "room for 192.0.2.1 again")
    assert p.metric("pop3d_connections_refused_total", reason="max_connections_per_ip") >= 1


def test_require_tls_exempt_uses_the_client_address(world, pki):  # noqa: F811
    """require-tls-exempt = 127.0.0.0/8 must not exempt every client of a
    balancer on loopback: the header's address decides."""
    p, pp = proxied_world(world, require_tls="yes", starttls="yes",
                          require_tls_exempt="127.0.0.0/8",
                          tls_cert_file=pki.cert, tls_key_file=pki.key)
    c = From(pp, BALANCER, v1("203.0.113.9"))
    assert c.cmd("USER alice").startswith("-ERR [AUTH] TLS is required")
    c = From(pp, BALANCER, v1("127.0.0.9"))
    assert c.cmd("USER alice") == "+OK"
    c = From(pp, BALANCER, v2(local=True))         # the balancer's own: exempt
    assert c.cmd("USER alice") == "+OK"


def test_config_checks(world, tmp_path):
    """-t refuses what a start refuses."""
    p, pp = proxied_world(world)
    p.stop()
    conf = open(p.conf).read()
    bad = [
        ("proxy-protocol = 127.0.0.1:%d" % pp, "proxy-protocol = 127.0.0.1:1",
         "proxy-protocol: \"127.0.0.1:1\" is not a listen or listen-tls address"),
        ("proxy-protocol = 127.0.0.1:%d" % pp, "proxy-protocol = maybe",
         "proxy-protocol: expected yes, no, or listen / listen-tls ADDR:PORT"),
        # an empty list freed its copy twice (found by fuzz-config): abort
        ("proxy-protocol = 127.0.0.1:%d" % pp, "proxy-protocol = ",
         "proxy-protocol: expected yes, no, or listen / listen-tls ADDR:PORT"),
        ("proxy-protocol = 127.0.0.1:%d" % pp, "proxy-protocol = , ,",
         "proxy-protocol: expected yes, no, or listen / listen-tls ADDR:PORT"),
        ("proxy-trusted-networks = 127.0.0.2/32", "proxy-trusted-networks = ",
         "proxy-trusted-networks: required with proxy-protocol"),
        ("proxy-trusted-networks = 127.0.0.2/32", "proxy-trusted-networks = 127.0.0.2/8",
         "proxy-trusted-networks: \"127.0.0.2/8\": address has bits set"),
        ("proxy-timeout = 1s", "proxy-timeout = 100ms", "proxy-timeout"),
    ]
    from conftest import BUILD
    for old, new, msg in bad:
        path = tmp_path / "bad.conf"
        path.write_text(conf.replace(old, new))
        os.chmod(path, 0o600)
        r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", str(path)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, new
        assert msg in r.stderr, (msg, r.stderr)
    path = tmp_path / "good.conf"
    path.write_text(conf.replace("proxy-protocol = 127.0.0.1:%d" % pp, "proxy-protocol = yes"))
    os.chmod(path, 0o600)
    r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


# ---- through the real HAProxy ---------------------------------------------------------

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                      if os.path.exists("/usr/sbin/haproxy") else None)

# docs/cluster.md's HAProxy configuration ("Load balancers and the PROXY
# protocol"), with loopback addresses and free ports in place of its own.
HAPROXY_CFG = """\
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m

frontend pop3
    bind 127.0.0.1:{fe_v2}
    default_backend pop3d

backend pop3d
    server pop1 127.0.0.1:{be_plain} send-proxy-v2 check check-send-proxy inter 500ms

frontend pop3s
    bind 127.0.0.1:{fe_tls}
    default_backend pop3d_tls

backend pop3d_tls
    server pop1 127.0.0.1:{be_tls} send-proxy-v2 check check-send-proxy inter 500ms

# v1, for balancers that only speak the text form
frontend pop3_v1
    bind 127.0.0.1:{fe_v1}
    default_backend pop3d_v1

backend pop3d_v1
    server pop1 127.0.0.1:{be_plain} send-proxy
"""


class Haproxy:
    def __init__(self, tmpdir, **ports):
        self.ports = ports
        self.cfg = os.path.join(str(tmpdir), "haproxy.cfg")
        self.log = os.path.join(str(tmpdir), "haproxy.log")
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG.format(**ports))
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg],
                                     stdout=self.logf, stderr=self.logf)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


@pytest.fixture
def haproxy_world(world, tmp_path, pki):  # noqa: F811
    """pop3d (plain and POP3S ports taking PROXY v2 from 127.0.0.1, where
    HAProxy connects from) behind a real HAProxy."""
    if HAPROXY is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is not installed (CI must have it: Debian package haproxy)")
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    started = []

    def make(**keys):
        plain, be_plain, be_tls = free_port(), free_port(), free_port()
        k = {"listen": "127.0.0.1:%d, 127.0.0.1:%d" % (plain, be_plain),
             "listen-tls": "127.0.0.1:%d" % be_tls,
             "tls-cert-file": pki.cert, "tls-key-file": pki.key,
             "proxy-protocol": "127.0.0.1:%d, 127.0.0.1:%d" % (be_plain, be_tls),
             "proxy-trusted-networks": "127.0.0.1/32"}
        k.update({key.replace("_", "-"): v for key, v in keys.items()})
        p = world(pop3d_keys=k, start=False)
        p.port = plain
        p.start()
        h = Haproxy(tmp_path, fe_v2=free_port(), fe_v1=free_port(), fe_tls=free_port(),
                    be_plain=be_plain, be_tls=be_tls)
        started.append(h)
        h.pki = pki

        def ready():
            if h.proc.poll() is not None:
                raise AssertionError("haproxy exited:\n" + open(h.log).read())
            try:
                c = From(h.ports["fe_v2"], "127.0.0.1", timeout=5)
            except (OSError, EOFError):
                return False
            c.close()
            return c.greeting.startswith("+OK")
        wait_until(ready, 20, "pop3d's greeting through haproxy")
        return p, h
    yield make
    for h in started:
        h.stop()


def test_haproxy_v2_and_v1_client_address(haproxy_world):
    p, h = haproxy_world()
    for fe in ("fe_v2", "fe_v1"):
        c = From(h.ports[fe], "127.0.0.5")
        assert c.greeting.startswith("+OK")
        assert login(c, pw="wrong") == "-ERR [AUTH] Authentication failed"
        assert login(c).startswith("+OK Logged in")
        assert c.cmd("QUIT").startswith("+OK")
    log = p.wait_log(r"logout: user=alice rip=127\.0\.0\.5 ", count=2)
    assert len(re.findall(r"login failed: user=alice rip=127\.0\.0\.5 ", log)) == 2
    assert len(re.findall(r"login: user=alice rip=127\.0\.0\.5 ", log)) == 2
    alog = p.authd.log_text()
    assert len(re.findall(r"auth ok: user=alice service=\S+ rip=127\.0\.0\.5 ", alog)) == 2
    # the second failure from 127.0.0.5 within a minute is counted, not
    # logged (authd(8)); pop3d logged both, above
    assert len(re.findall(r"auth failed: user=alice service=\S+ rip=127\.0\.0\.5 ", alog)) == 1
    assert p.authd.metric("authd_log_lines_suppressed_total", kind="auth_failed") == 1
    assert not re.search(r"rip=127\.0\.0\.1 ", alog)
    # HAProxy's health checks arrive as LOCAL headers
    wait_until(lambda: p.metric("pop3d_proxy_headers_total", result="local") >= 1, 30,
               "a health check (LOCAL)")
    assert p.metric("pop3d_proxy_headers_total", result="malformed") == 0


def test_haproxy_per_ip_limit_per_real_client(haproxy_world):
    p, h = haproxy_world(max_connections_per_ip="2")
    port = h.ports["fe_v2"]
    a = [From(port, "127.0.0.5") for _ in range(2)]
    assert all(c.greeting.startswith("+OK") for c in a)
    third = From(port, "127.0.0.5")
    assert third.greeting == "-ERR [SYS/TEMP] Too many connections from your address"
    # other clients behind the same HAProxy are not limited with it
    b = [From(port, "127.0.0.6"), From(port, "127.0.0.7")]
    assert all(c.greeting.startswith("+OK") for c in b)
    assert login(b[0]).startswith("+OK Logged in")
    assert re.search(r"refused 127\.0\.0\.5 \(through 127\.0\.0\.1\): max-connections-per-ip",
                     p.log_text())


def test_haproxy_failure_delay_per_real_client(haproxy_world):
    """auth-failure-delay = 2s holds the failing client, not the others:
    another client logs in through the same HAProxy meanwhile."""
    p, h = haproxy_world(auth_failure_delay="2s")
    port = h.ports["fe_v2"]
    bad = From(port, "127.0.0.5")
    assert bad.cmd("USER alice") == "+OK"
    t0 = time.monotonic()
    bad.send("PASS wrong\r\n")
    good = From(port, "127.0.0.6")
    assert login(good, "bob", "bob-pw").startswith("+OK Logged in")
    assert time.monotonic() - t0 < 1.5
    assert bad.line() == "-ERR [AUTH] Authentication failed"
    assert time.monotonic() - t0 >= 1.9
    log = p.wait_log(r"login: user=bob rip=127\.0\.0\.6 ")
    assert re.search(r"login failed: user=alice rip=127\.0\.0\.5 ", log)


def test_haproxy_tls_listener_send_proxy_v2(haproxy_world):
    """POP3S through HAProxy in TCP mode: the PROXY header first, then the
    client's TLS handshake, both on the same connection to pop3d."""
    p, h = haproxy_world()
    c = From(h.ports["fe_tls"], "127.0.0.5", tls=h.pki.context())
    assert c.greeting.startswith("+OK")
    assert login(c).startswith("+OK Logged in")
    assert c.cmd("STAT").startswith("+OK 3 ")
    assert c.cmd("QUIT").startswith("+OK")
    log = p.wait_log(r"logout: user=alice rip=127\.0\.0\.5 ")
    assert re.search(r"login: user=alice rip=127\.0\.0\.5 method=USER secured=yes tls=", log)
    assert re.search(r"auth ok: user=alice service=\S+ rip=127\.0\.0\.5 ",
                     p.authd.log_text())
    wait_until(lambda: p.metric("pop3d_tls_handshakes_total", result="ok") >= 1, 10,
               "the handshake counted")
