"""pop3d's pre-login limits (issue 15): login-timeout bounds the whole
AUTHORIZATION state whatever the client sends, login-max-commands the
command lines before a login.  The real authd and pop3d, raw clients."""

import re
import select
import time

from authdlib import wait_until
from pop3lib import Client
from test_pop3d import mailroot, world  # noqa: F401 (fixtures)


def test_noop_every_few_hundred_ms_is_closed_at_login_timeout(world):
    p = world(pop3d_keys={"login-timeout": "2s", "preauth-timeout": "60s"})
    c = Client(p.port)
    t0 = time.monotonic()
    noops = 0
    # bounded: the limit is 2 s; give up after 10
    while time.monotonic() - t0 < 10:
        c.send("NOOP\r\n")
        line = c.line(timeout=5)
        if line != "+OK":
            break
        noops += 1
        # the next NOOP in 0.2 s, unless the server speaks first
        select.select([c.sock], [], [], 0.2)
    took = time.monotonic() - t0
    assert line == "-ERR Login time limit exceeded, closing", line
    assert c.closed(5)
    assert 1.8 < took < 4, took
    assert noops >= 5
    log = p.wait_log(r"login limit: rip=127\.0\.0\.1 user=- limit=login-timeout")
    assert len(re.findall(r"login limit: ", log)) == 1
    wait_until(lambda: p.metric("pop3d_login_limits_total", limit="login_timeout") == 1, 10,
               "the front end's counters")
    assert p.metric("pop3d_login_limits_total", limit="login_max_commands") == 0


def test_login_timeout_does_not_touch_a_session(world):
    """The limit is for the AUTHORIZATION state only: a client that logged
    in in time keeps its session beyond it."""
    p = world(pop3d_keys={"login-timeout": "1s"})
    c = Client(p.port)
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK")
    t0 = time.monotonic()
    # bounded: 1.5 s of STATs, well past the 1 s limit
    while time.monotonic() - t0 < 1.5:
        assert c.cmd("STAT").startswith("+OK 3 ")
        select.select([c.sock], [], [], 0.1)
    assert c.cmd("QUIT").startswith("+OK")
    wait_until(lambda: p.metric("pop3d_sessions_ended_total", reason="QUIT") == 1, 10,
               "the session's report")
    assert p.metric("pop3d_login_limits_total", limit="login_timeout") == 0


def test_login_max_commands(world):
    p = world(pop3d_keys={"login-max-commands": "5"})
    # five lines are allowed, a login among them
    c = Client(p.port)
    assert c.cmd("CAPA").startswith("+OK")
    while c.line() != ".":
        pass
    assert c.cmd("NOOP") == "+OK"
    assert c.cmd("NOOP") == "+OK"
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK")
    assert c.cmd("QUIT").startswith("+OK")
    c.close()
    # a burst of 20 pipelined lines: five answered, then the limit
    d = Client(p.port)
    d.send("NOOP\r\n" * 19 + "PASS secret-never-read\r\n")
    for _ in range(5):
        assert d.line() == "+OK"
    assert d.line() == "-ERR Too many commands before login, closing"
    assert d.closed(5)
    assert d.buf == b""
    log = p.wait_log(r"login limit: rip=127\.0\.0\.1 user=- limit=login-max-commands "
                     r"commands=6, closing")
    assert len(re.findall(r"login limit: ", log)) == 1
    assert "secret-never-read" not in log
    wait_until(lambda: p.metric("pop3d_login_limits_total", limit="login_max_commands") == 1,
               10, "the front end's counters")
    assert p.metric("pop3d_login_limits_total", limit="login_timeout") == 0
