"""Operating pop3d: the stats socket (strictly parsed Prometheus text) under
a small load of real clients, process titles, reload by SIGHUP (limits,
greeting, certificates, refused configurations, keys that need a restart),
the log file (required at start-up, reopened on SIGUSR1, fixed
fail2ban-friendly lines) and authctl's rendering of pop3d's metrics."""

import base64
import grp
import os
import poplib
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from authdlib import wait_until
from conftest import BUILD, HELPERS, PYTHON
from pop3lib import IS_ROOT, TEST_GID, Client, free_port, user_uid
from promparse import parse, value
# the pop3d and TLS suites' fixtures
from test_pop3d import mailroot, process_gone, world  # noqa: F401
from test_tls import pki, pop3s, tls_keys, tls_port  # noqa: F401


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\0")[0].decode(errors="replace")


def titles(p):
    """{pid: title} of pop3d's live children."""
    out = {}
    for pid, _ in p.children():
        try:
            out[pid] = cmdline(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def set_keys(p, **keys):
    """Rewrites p's config with [pop3d] keys set (added, or replaced)."""
    text = open(p.conf).read()
    for k, v in keys.items():
        k = k.replace("_", "-")
        line = "%s = %s\n" % (k, v)
        text, n = re.subn(r"(?m)^%s = .*\n" % re.escape(k), line, text)
        if n == 0:
            text = text.replace("[pop3d]\n", "[pop3d]\n" + line, 1)
    with open(p.conf, "w") as f:
        f.write(text)


def reload(p, expect="configuration reloaded"):
    """SIGHUP, then waits for the outcome's log line (the n-th of its kind)."""
    n = p.log_text().count(expect)
    os.kill(p.proc.pid, signal.SIGHUP)
    wait_until(lambda: p.log_text().count(expect) > n, 30, "reload: " + expect)


def session(port, user, tls=None):
    """A logged-in raw client."""
    c = Client(port, tls=tls)
    assert c.cmd("USER " + user) == "+OK"
    r = c.cmd("PASS %s-pw" % user)
    assert r.startswith("+OK Logged in"), r
    return c


def metric_is(p, want, name, **labels):
    return lambda: p.metric(name, **labels) == want


# ---- the stats socket ------------------------------------------------------------------


def test_stats_counters_move_under_load(world):
    p = world()
    before, types = parse(p.scrape())
    assert types["pop3d_session_duration_seconds"] == "histogram"
    assert types["pop3d_auth_seconds"] == "histogram"
    assert types["pop3d_logins_total"] == "counter"
    received = []
    errors = []
    lock = threading.Lock()

    def good(user, rounds):
        for _ in range(rounds):
            try:
                c = session(p.port, user)
                assert c.cmd("STAT").startswith("+OK")
                c.send("LIST\r\n")
                assert c.line().startswith("+OK")
                c.multiline()
                if user != "bob":
                    assert c.cmd("RETR 1").startswith("+OK")
                    c.multiline()
                assert c.cmd("QUIT") == "+OK Logging out"
                assert c.closed()
                with lock:
                    received.append(c.received)
                c.close()
            except Exception as e:      # noqa: BLE001 (reported below)
                errors.append(repr(e))

    def bad(rounds):
        for _ in range(rounds):
            try:
                c = Client(p.port)
                assert c.cmd("USER alice") == "+OK"
                assert c.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed"
                assert c.cmd("QUIT") == "+OK Bye"
                assert c.closed()
                with lock:
                    received.append(c.received)
                c.close()
            except Exception as e:      # noqa: BLE001
                errors.append(repr(e))
    threads = [threading.Thread(target=good, args=(u, 3)) for u in ("alice", "bob", "carol")]
    threads.append(threading.Thread(target=bad, args=(2,)))
    for t in threads:
        t.start()
    # scrapes during the load parse strictly and never see a counter go down
    last = before
    while any(t.is_alive() for t in threads):
        now, _ = parse(p.scrape())
        for (name, lab), v in last.items():
            if types.get(name) == "counter":
                assert now[(name, lab)] >= v, (name, lab)
        last = now
    for t in threads:
        t.join(60)
    assert errors == []

    def settled():
        # a front end's last bytes may come a snapshot after its counts
        a = p.metrics()
        return (delta(before, a, "pop3d_sessions_ended_total", reason="QUIT") == 9 and
                delta(before, a, "pop3d_logins_total", result="failed") == 2 and
                delta(before, a, "pop3d_commands_total", state="authorization",
                      command="QUIT") == 2 and
                delta(before, a, "pop3d_bytes_sent_total") >= sum(received) and
                delta(before, a, "pop3d_auth_seconds_count") >= 11 and
                value(a, "pop3d_connections") == 0)
    wait_until(settled, 20, "counters of the load", interval=0.05)
    after = p.metrics()
    assert delta(before, after, "pop3d_logins_total", result="ok") == 9
    assert delta(before, after, "pop3d_logins_total", result="tempfailed") == 0
    assert delta(before, after, "pop3d_handoffs_total", result="ok") == 9
    assert delta(before, after, "pop3d_connections_accepted_total") == 11
    assert delta(before, after, "pop3d_connections_refused_total") == 0
    for cmd, n in (("USER", 11), ("PASS", 11), ("STAT", 0), ("RETR", 0)):
        assert delta(before, after, "pop3d_commands_total", state="authorization",
                     command=cmd) == n, cmd
    for cmd, n in (("STAT", 9), ("LIST", 9), ("RETR", 6), ("QUIT", 9), ("USER", 0)):
        assert delta(before, after, "pop3d_commands_total", state="transaction",
                     command=cmd) == n, cmd
    assert delta(before, after, "pop3d_messages_total", op="retr") == 6
    assert delta(before, after, "pop3d_session_duration_seconds_count") == 9
    assert delta(before, after, "pop3d_auth_seconds_count") == 11
    # Every byte a client read was counted; the slack is one greeting
    # pop3d's readiness probe may have read before "before".
    sent = delta(before, after, "pop3d_bytes_sent_total")
    assert sum(received) <= sent <= sum(received) + 64, (sent, sum(received))
    assert value(after, "pop3d_sessions") == 0
    assert value(after, "pop3d_frontends", state="active") == 2


def test_awaiting_auth_and_sessions_visible(world, tmp_path):
    users = tmp_path / "ext-users"
    piddir = tmp_path / "pids"
    piddir.mkdir()
    p = world(users={"carol": [("new/1.a", b"S: x\n\nx\n")]},
              auths=[("ext", {"type": "external", "workers": "2", "timeout": "20s",
                              "default-gid": str(TEST_GID if IS_ROOT else os.getgid()),
                              "program": "%s %s/ext_helper.py %s %s"
                              % (PYTHON, HELPERS, users, piddir)})],
              start=False)
    users.write_text("carol:carol-pw:%d:%s\n" % (user_uid(),
                                                 os.path.dirname(p.maildirs["carol"])))
    p.start()
    delay = piddir / "DELAY"
    delay.write_text("4")
    c = Client(p.port)
    assert c.cmd("USER carol") == "+OK"
    c.send("PASS carol-pw\r\n")
    # authd is slow: the connection waits for it, and says so
    wait_until(metric_is(p, 1, "pop3d_connections", state="awaiting_auth"), 10,
               "awaiting_auth", interval=0.05)
    assert p.metric("pop3d_connections", state="preauth") == 0
    wait_until(lambda: "pop3d: login [1 connections, 1 awaiting auth]" in
               titles(p).values(), 10, "front end title while awaiting authd")
    delay.unlink()
    assert c.line(timeout=15).startswith("+OK Logged in")
    # a session is running while the client stays (and the front end's
    # counters come within a second)
    wait_until(metric_is(p, 1, "pop3d_sessions"), 10, "a running session", interval=0.05)
    wait_until(metric_is(p, 1, "pop3d_auth_seconds_count"), 10, "authd latency",
               interval=0.05)
    s = p.metrics()
    assert value(s, "pop3d_connections", state="session") == 1
    assert value(s, "pop3d_connections", state="awaiting_auth") == 0
    assert value(s, "pop3d_auth_seconds_bucket", le="1") == 0   # took about 4 s
    assert value(s, "pop3d_auth_seconds_count") == 1
    assert c.cmd("QUIT") == "+OK Logging out"
    wait_until(metric_is(p, 0, "pop3d_sessions"), 10, "session gone", interval=0.05)


def test_process_titles(world):
    p = world()

    def master():
        return cmdline(p.proc.pid)
    wait_until(lambda: master() == "pop3d: master", 5, "master title")
    wait_until(lambda: sorted(titles(p).values()) ==
               ["pop3d: login [0 connections, 0 awaiting auth]"] * 2, 10, "front end titles")
    c = session(p.port, "alice")
    pid = int(re.findall(r"login: user=alice .* pid=(\d+)", p.log_text())[-1])
    assert cmdline(pid) == "pop3d: session alice 127.0.0.1"
    idle = Client(p.port)
    wait_until(lambda: "pop3d: login [1 connections, 0 awaiting auth]" in
               titles(p).values(), 10, "a front end with a client")
    idle.close()
    assert c.cmd("QUIT") == "+OK Logging out"


def test_stats_socket_mode_and_group(world, tmp_path):
    group = "mail" if IS_ROOT else grp.getgrgid(os.getgid()).gr_name
    p = world(pop3d_keys={"stats-group": group})
    st = os.stat(p.stats)
    assert st.st_mode & 0o777 == 0o660
    assert st.st_gid == grp.getgrnam(group).gr_gid
    # an unknown group is a configuration error
    set_keys(p, stats_group="no-such-group-here")
    r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", p.conf],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "stats-group" in r.stderr, r.stderr
    # and a reload with one is refused, the socket keeping its group
    reload(p, "reload refused")
    assert os.stat(p.stats).st_gid == grp.getgrnam(group).gr_gid


def test_sessions_killed_and_refused_are_counted(world):
    p = world(pop3d_keys={"max-sessions-per-user": "1", "max-connections-per-ip": "3"})
    before = p.metrics()
    c = session(p.port, "alice")
    pid = int(re.findall(r"login: user=alice .* pid=(\d+)", p.log_text())[-1])
    # a second session of alice: refused by the per-user limit
    d = Client(p.port)
    d.cmd("USER alice")
    assert d.cmd("PASS alice-pw").startswith("-ERR [IN-USE]")
    d.close()
    held = [Client(p.port) for _ in range(2)]       # 3 from this address now
    e = Client(p.port)
    assert e.greeting.startswith("-ERR [SYS/TEMP] Too many connections from your address")
    e.close()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_gone(pid), 10, "session gone")
    c.close()
    for h in held:
        h.close()
    wait_until(metric_is(p, 0, "pop3d_connections"), 10, "connections released",
               interval=0.05)
    after = p.metrics()
    assert delta(before, after, "pop3d_sessions_ended_total", reason="killed") == 1
    assert delta(before, after, "pop3d_logins_total", result="refused") == 1
    assert delta(before, after, "pop3d_logins_refused_total",
                 reason="max_sessions_per_user") == 1
    assert delta(before, after, "pop3d_connections_refused_total",
                 reason="max_connections_per_ip") == 1
    assert delta(before, after, "pop3d_session_duration_seconds_count") == 1


def test_tls_handshakes_and_bytes_counted(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    before = p.metrics()
    c = Client(tls_port(p), tls=pki.context())
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    assert c.cmd("RETR 1").startswith("+OK")
    c.multiline()
    assert c.cmd("QUIT") == "+OK Logging out"
    assert c.closed()
    received = c.received
    c.close()
    g = socket.create_connection(("127.0.0.1", tls_port(p)), timeout=10)
    g.sendall(b"this is no ClientHello\r\n" * 4)
    g.settimeout(10)
    try:
        while g.recv(4096):
            pass
    except OSError:
        pass
    g.close()

    # Each front end sends its counters once a second, and the two
    # connections may have gone to different front ends: wait for every
    # counter asserted below, not only for some of them.
    def settled():
        a = p.metrics()
        return (delta(before, a, "pop3d_tls_handshakes_total", result="failed") == 1 and
                delta(before, a, "pop3d_tls_handshakes_total", result="ok") >= 1 and
                delta(before, a, "pop3d_sessions_ended_total", reason="QUIT") == 1 and
                delta(before, a, "pop3d_bytes_sent_total") > received and
                value(a, "pop3d_connections") == 0)
    wait_until(settled, 20, "TLS counters", interval=0.05)
    after = p.metrics()
    assert delta(before, after, "pop3d_tls_handshakes_total", result="ok") == 1
    assert delta(before, after, "pop3d_commands_total", state="transaction",
                 command="RETR") == 1
    # on the wire: records, handshake and alerts come on top of the text
    # (counted once: by the front end, not again by the session behind it)
    sent = delta(before, after, "pop3d_bytes_sent_total")
    assert received < sent < received + 16384, (sent, received)


# ---- reload --------------------------------------------------------------------------


def test_reload_changes_limits_and_greeting_keeps_session(world):
    p = world(pop3d_keys={"max-connections-per-ip": "5"})
    s = session(p.port, "alice")
    assert s.cmd("STAT").startswith("+OK 3 ")
    fronts = set(titles(p)) - {int(re.findall(r"pid=(\d+)", p.log_text())[-1])}
    set_keys(p, greeting="Reloaded hello", max_connections_per_ip="2",
             login_processes="3")
    reload(p)
    c = Client(p.port)
    assert c.greeting == "+OK Reloaded hello"
    # the session and c come from 127.0.0.1: a third is over the new limit
    d = Client(p.port)
    assert d.greeting.startswith("-ERR [SYS/TEMP] Too many connections from your address")
    d.close()
    c.close()
    # the session did not notice
    assert s.cmd("RETR 1").startswith("+OK")
    s.multiline()
    assert s.cmd("QUIT") == "+OK Logging out"
    # the old front ends left once idle; three new ones serve
    wait_until(lambda: not fronts & set(titles(p)), 20, "old front ends gone")
    wait_until(metric_is(p, 0, "pop3d_frontends", state="retiring"), 10, "none retiring",
               interval=0.05)
    st = p.metrics()
    assert value(st, "pop3d_frontends", state="active") == 3
    assert value(st, "pop3d_reloads_total", result="ok") == 1
    assert value(st, "pop3d_frontend_restarts_total") == 0
    n = poplib.POP3("127.0.0.1", p.port, timeout=15)
    assert n.getwelcome() == b"+OK Reloaded hello"
    n.user("bob")
    n.pass_("bob-pw")
    n.quit()


def test_reload_refuses_broken_config_and_names_fixed_keys(world):
    p = world()
    s = session(p.port, "alice")
    good = open(p.conf).read()
    set_keys(p, max_connections="lots", greeting="Never seen")
    reload(p, "reload refused")
    assert re.search(r"error: reload refused, running configuration kept: .*max-connections",
                     p.log_text())
    assert p.metric("pop3d_reloads_total", result="failed") == 1
    assert p.metric("pop3d_reloads_total", result="ok") == 0
    c = Client(p.port)
    assert c.greeting == "+OK POP3 server ready"     # the old configuration
    c.close()
    b = session(p.port, "bob")
    assert b.cmd("QUIT") == "+OK Logging out"
    # what needs a restart is named, and the rest applies
    with open(p.conf, "w") as f:
        f.write(good)
    other = free_port()
    set_keys(p, listen="127.0.0.1:%d" % other, greeting="Half applied",
             login_chroot="/nonexistent")
    reload(p)
    log = p.log_text()
    assert "reload: [pop3d] listen changed; restart pop3d to apply" in log
    assert "reload: [pop3d] login-chroot changed; restart pop3d to apply" in log
    c = Client(p.port)
    assert c.greeting == "+OK Half applied"
    c.close()
    with pytest.raises(OSError):
        Client(other, timeout=2)
    assert s.cmd("STAT").startswith("+OK 3 ")
    assert s.cmd("QUIT") == "+OK Logging out"


def test_reload_loads_new_certificates(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    first = pop3s(p, pki)
    cert1 = first.sock.getpeercert(binary_form=True)
    first.user("alice")
    first.pass_("alice-pw")
    chain, key = pki.leaf("localhost-renewed", ["DNS:localhost", "IP:127.0.0.1"])
    set_keys(p, tls_cert_file=chain, tls_key_file=key)
    reload(p)
    second = pop3s(p, pki)
    cert2 = second.sock.getpeercert(binary_form=True)
    assert cert2 != cert1
    assert second.getwelcome().startswith(b"+OK")
    second.quit()
    # the TLS session from before the reload still runs (its old front end
    # relays it until it ends)
    assert first.stat()[0] == 3
    first.quit()
    # a key that does not belong to the certificate: refused, certificates kept
    set_keys(p, tls_key_file=pki.key)
    reload(p, "reload refused")
    third = pop3s(p, pki)
    assert third.sock.getpeercert(binary_form=True) == cert2
    third.quit()


# ---- logging --------------------------------------------------------------------------


def test_unopenable_log_file_fails_at_startup(world, tmp_path):
    p = world(pop3d_keys={"log-target": "file",
                          "log-file": str(tmp_path / "no-such-dir" / "pop3d.log")},
              start=False)
    for args in (["-f"], []):
        r = subprocess.run([os.path.join(BUILD, "pop3d")] + args + ["-c", p.conf],
                           capture_output=True, text=True, timeout=30)
        try:
            assert r.returncode == 1, (args, r.returncode, r.stderr)
            assert "log-file %s: cannot open: No such file or directory" % (
                tmp_path / "no-such-dir" / "pop3d.log") in r.stderr, r.stderr
        finally:
            # had it detached anyway, its stats socket names the daemon
            if os.path.exists(p.stats):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(p.stats)
                    pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET,
                                                           socket.SO_PEERCRED, 12))[0]
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
                s.close()


HOSTILE = "evil rip=192.0.2.66 "
# what pop3d(8) gives fail2ban (LOGGING): the address after a field that
# cannot contain a blank
FAILREGEX = re.compile(r"pop3d\[\d+\]: info: login failed: user=\S+ rip=(\S+) method=(USER|PLAIN)$",
                       re.M)


def test_log_lines_fixed_format(world):
    p = world()
    c = Client(p.port)
    assert c.cmd("USER " + HOSTILE) == "+OK"
    assert c.cmd("PASS x") == "-ERR [AUTH] Authentication failed"
    resp = base64.b64encode(b"\0carol\0wrong").decode()
    assert c.cmd("AUTH PLAIN " + resp) == "-ERR [AUTH] Authentication failed"
    c.close()
    s = session(p.port, "alice")
    s.cmd("QUIT")
    wait_until(lambda: "logout: user=alice" in p.log_text(), 10, "logout line")
    log = p.log_text()
    assert FAILREGEX.findall(log) == [("127.0.0.1", "USER"), ("127.0.0.1", "PLAIN")], log
    assert "login failed: user=evil\\x20rip=192.0.2.66\\x20 rip=127.0.0.1 method=USER" in log
    assert "login failed: user=carol rip=127.0.0.1 method=PLAIN" in log
    assert re.search(r"^pop3d\[\d+\]: info: login: user=alice rip=127\.0\.0\.1 method=USER "
                     r"secured=no pid=\d+$", log, re.M)
    assert re.search(r"^pop3d\[\d+\]: info: logout: user=alice rip=127\.0\.0\.1 reason=QUIT "
                     r"retr=0/0 top=0/0 del=0/0 size=3/\d+ secured=no$", log, re.M)
    assert "192.0.2.66 " not in log
    assert "wrong" not in log and "alice-pw" not in log


def test_sigusr1_reopens_log_everywhere(world, tmp_path):
    logfile = tmp_path / "pop3d-file.log"
    p = world(pop3d_keys={"log-target": "file", "log-file": str(logfile)})
    s = session(p.port, "alice")
    rotated = tmp_path / "pop3d-file.log.1"
    os.rename(logfile, rotated)
    os.kill(p.proc.pid, signal.SIGUSR1)
    wait_until(lambda: logfile.exists() and "log file reopened" in logfile.read_text(), 10,
               "reopened")
    # front ends write to the new file too (they were replaced) ...
    c = Client(p.port)
    c.cmd("USER nobody-here")
    assert c.cmd("PASS x").startswith("-ERR [AUTH]")
    c.close()
    wait_until(lambda: "login failed: user=nobody-here" in logfile.read_text(), 10,
               "front end line in the new file")
    # ... and so do new sessions; the session from before keeps the old file
    b = session(p.port, "bob")
    b.cmd("QUIT")
    wait_until(lambda: "logout: user=bob" in logfile.read_text(), 10, "bob's logout")
    s.cmd("QUIT")
    wait_until(lambda: "logout: user=alice" in rotated.read_text(), 10, "alice's logout")


# ---- authctl -------------------------------------------------------------------------


def authctl(*args):
    return subprocess.run([os.path.join(BUILD, "authctl")] + list(args), capture_output=True,
                          text=True, timeout=30)


def test_authctl_shows_pop3d(world, tmp_path):
    p = world()
    s = session(p.port, "alice")
    s.cmd("STAT")
    wait_until(metric_is(p, 1, "pop3d_sessions"), 10, "session", interval=0.05)
    wait_until(metric_is(p, 1, "pop3d_commands_total", state="authorization", command="PASS"),
               10, "the front end's counters", interval=0.05)
    r = authctl("-P", p.stats, "stats")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("pop3d: 1 connections (0 pre-auth, 0 awaiting auth, 1 in session), "
                          "2 front ends (0 retiring)"), out
    assert re.search(r"logins: +1 ok, 0 failed, 0 tempfailed, 0 refused", out), out
    assert re.search(r"sessions: +1 running, 0 ended", out), out
    assert re.search(r"commands before login: +USER 1 PASS 1\n", out), out
    s.cmd("QUIT")
    wait_until(metric_is(p, 1, "pop3d_commands_total", state="transaction", command="STAT"),
               10, "the session's report", interval=0.05)
    r = authctl("-P", p.stats, "stats")
    assert re.search(r"commands after login: +QUIT 1 STAT 1\n", r.stdout), r.stdout
    assert re.search(r"sessions ended: +QUIT 1\n", r.stdout), r.stdout
    r = authctl("-P", p.stats, "stats", "--raw")
    assert r.returncode == 0
    parse(r.stdout)
    r = authctl("-P", str(tmp_path / "nope.sock"), "stats")
    assert r.returncode == 69 and "cannot read" in r.stderr
