"""Prometheus over HTTP (issue 20, item 2): metrics-listen on authd and
pop3d, scraped with curl and parsed with python3-prometheus-client's own
text parser (not ours), plus what a hostile or broken HTTP client gets:
wrong methods, paths and versions, an oversized head, a client that never
finishes its request, more clients than the server serves at once."""

import os
import socket
import subprocess
import time

import pytest

from authdlib import recv_all, wait_until
from conftest import BUILD
from pop3lib import free_port
from test_pop3d import mailroot, world  # noqa: F401 (fixtures)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:     # Debian package python3-prometheus-client
    text_string_to_metric_families = None


def curl(url, *args):
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "20"] + list(args) + [url],
                       capture_output=True, timeout=30)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else None
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, body


def raw(port, data, read=True, timeout=15):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = recv_all(s) if read else b""
    s.close()
    return out


def families(body):
    if text_string_to_metric_families is None:
        if os.environ.get("CI"):
            pytest.fail("python3-prometheus-client is not installed (CI must have it)")
        pytest.skip("python3-prometheus-client is not installed")
    if isinstance(body, bytes):
        body = body.decode()
    return {f.name: f for f in text_string_to_metric_families(body)}


@pytest.fixture
def scraped(world):
    ap, pp = free_port(), free_port()
    p = world(start=False, pop3d_keys={"metrics-listen": "127.0.0.1:%d" % pp})
    a = p.authd
    a.stop()
    text = open(a.conf).read().replace("[authd]\n", "[authd]\nmetrics-listen = %d\n" % ap, 1)
    open(a.conf, "w").write(text)
    a.start()
    p.start()
    return p, ap, pp


def test_both_daemons_serve_metrics_over_http(scraped):
    p, ap, pp = scraped
    c = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    c.recv(100)
    c.sendall(b"USER alice\r\nPASS alice-pw\r\nQUIT\r\n")
    while c.recv(4096):
        pass
    c.close()
    for port, name in ((ap, "authd_requests_total"), (pp, "pop3d_logins_total")):
        status, h, body = curl("http://127.0.0.1:%d/metrics" % port)
        assert status == 200, (status, body[:200])
        assert h["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert int(h["content-length"]) == len(body)
        fam = families(body)
        assert name.replace("_total", "") in fam or name in fam, sorted(fam)[:20]
        # the same text as the stats socket (counters may have moved between)
        sock = p.scrape() if port == pp else p.authd.scrape()
        assert sorted(families(sock)) == sorted(fam)
    # a query string is ignored; HEAD gets the headers only
    assert curl("http://127.0.0.1:%d/metrics?x=1" % pp)[0] == 200
    status, h, body = curl("http://127.0.0.1:%d/metrics" % pp, "-I")
    assert status == 200 and body == b"" and int(h["content-length"]) > 100


def test_what_other_requests_get(scraped):
    p, ap, pp = scraped
    assert curl("http://127.0.0.1:%d/" % pp)[0] == 404
    assert curl("http://127.0.0.1:%d/metricsX" % pp)[0] == 404
    status, h, _ = curl("http://127.0.0.1:%d/metrics" % pp, "-X", "POST", "-d", "x=1")
    assert status == 405 and h["allow"] == "GET, HEAD"
    assert raw(pp, b"GET /metrics HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert raw(pp, b"GET /metrics\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(pp, b"GET http://x/metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(pp, b"GET /met\x00rics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(pp, b"\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # bare LFs, and a client that half-closes after its request
    out = raw(pp, b"GET /metrics HTTP/1.0\n\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"pop3d_" in out
    s = socket.create_connection(("127.0.0.1", pp), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    out = recv_all(s)
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = [int(x.split(b":")[1]) for x in head.split(b"\r\n")
              if x.lower().startswith(b"content-length:")][0]
    assert len(body) == length and families(body)
    # a head larger than 8 KiB is refused, not buffered
    big = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    try:
        out = raw(pp, big)
    except (ConnectionResetError, BrokenPipeError):
        out = b"HTTP/1.1 431 (reset while sending)"
    assert out.startswith(b"HTTP/1.1 431 "), out[:80]
    assert p.proc.poll() is None and p.authd.proc.poll() is None


def test_idle_clients_are_bounded_and_timed_out(scraped):
    p, ap, pp = scraped
    idle = []
    t_open = time.monotonic()
    for _ in range(32):         # POP3D_STATS_MAX_CONNS
        s = socket.create_connection(("127.0.0.1", pp), timeout=20)
        s.sendall(b"GET /metr")     # never finished
        idle.append(s)

    def refused():
        s = socket.create_connection(("127.0.0.1", pp), timeout=5)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            return s.recv(100) == b""
        except ConnectionResetError:
            return True
        finally:
            s.close()
    # the 33rd is closed at once, without an answer
    wait_until(refused, 10, "a connection over the limit refused")
    # pop3d itself goes on
    c = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    assert c.recv(100).startswith(b"+OK")
    c.close()
    # the idle ones get 408 once the request's time is up (10 s from
    # accept), even one that keeps sending a byte now and then
    drip = idle[0]
    drip.settimeout(1.5)
    got = b""
    while not got and time.monotonic() - t_open < 20:
        try:
            drip.sendall(b"x")
            got = drip.recv(100)
        except socket.timeout:
            pass
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert time.monotonic() - t_open < 13
    for s in idle:
        s.close()
    wait_until(lambda: curl("http://127.0.0.1:%d/metrics" % pp)[0] == 200, 10, "scrape again")


def test_bad_metrics_listen_refused(tmp_path, world):
    p = world(start=False, pop3d_keys={"metrics-listen": "localhost:99999"})
    r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t",
                        "-c", p.conf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "[pop3d] metrics-listen: bad address" in r.stderr, r.stderr
