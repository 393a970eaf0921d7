"""Operating authd: the stats socket (strictly parsed Prometheus text),
authctl stats, reload by SIGHUP and by authctl, the process title."""

import os
import signal
import subprocess

import pytest

from authdlib import wait_until
from conftest import ext_auth, helper_calls, authctl
from promparse import parse, value

pytestmark = pytest.mark.threaded


def test_stats_counters_move(authd_factory, helper_users, tmp_path):
    path = tmp_path / "users"
    path.write_text("bob:{PLAIN}bob-pw:1:1::/h::\n")
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path)}),
                       ("ext", ext_auth(helper_users))])
    before, types = parse(a.scrape())
    assert types["authd_service_seconds"] == "histogram"
    c = a.client()
    for _ in range(7):
        assert c.auth("bob", "bob-pw").cmd == "OK"
    for _ in range(3):
        assert c.auth("bob", "nope").cmd == "FAIL"
    assert c.auth("carol", "carol-pw").cmd == "OK"
    assert c.auth("tempfail1", "x").cmd == "TEMPFAIL"
    after, _ = parse(a.scrape())

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert delta("authd_answers_total", result="ok") == 8
    assert delta("authd_answers_total", result="fail") == 3
    assert delta("authd_answers_total", result="tempfail") == 1
    assert delta("authd_authenticator_results_total", authenticator="pw", result="ok") == 7
    assert delta("authd_authenticator_results_total", authenticator="pw", result="nouser") == 2
    assert delta("authd_authenticator_results_total", authenticator="ext",
                 result="unavailable") == 1
    assert delta("authd_service_seconds_count", authenticator="pw") == 12
    assert value(after, "authd_clients_connected") == 1
    assert value(after, "authd_workers", authenticator="ext") == 2
    # authctl renders both the table and the raw text
    r = authctl("-A", a.stats_socket, "stats")
    assert r.returncode == 0, r.stderr
    assert "authenticator" in r.stdout and "pw" in r.stdout and "ext" in r.stdout
    r = authctl("-A", a.stats_socket, "stats", "--raw")
    parse(r.stdout)
    r = authctl("-A", a.stats_socket, "stats", "--watch", "1", "--count", "2")
    assert r.returncode == 0 and r.stdout.count("authd:") == 2
    r = authctl("-A", str(tmp_path / "nope.sock"), "stats")
    assert r.returncode == 69 and "cannot read" in r.stderr


def test_stats_show_stuck_workers_and_timeouts(authd_factory, tmp_path):
    slow = subprocess.run(["argon2", "saltsaltsalt", "-id", "-t", "4", "-m", "18", "-p", "1",
                           "-e"], input=b"right", capture_output=True, check=True)
    path = tmp_path / "users"
    path.write_text("slowhash:{ARGON2ID}%s\n" % slow.stdout.decode().strip())
    os.chmod(path, 0o600)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "workers": "1",
                               "timeout": "100ms"})])
    c = a.client()
    assert c.auth("slowhash", "x", timeout=10).kv["reason"] == "timeout"
    # stuck once more than 100 ms past the deadline
    wait_until(lambda: a.metric("authd_workers_stuck", authenticator="pw") == 1, 10,
               "worker stuck", interval=0.02)
    s, _ = parse(a.scrape())
    assert value(s, "authd_authenticator_results_total", authenticator="pw",
                 result="timeout") == 1
    wait_until(lambda: a.metric("authd_workers_stuck", authenticator="pw") == 0, 20, "worker back")


def test_reload_changes_ttl_and_refuses_broken_config(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users))], cache={"positive-ttl": "0s"})
    c = a.client()
    for i in range(3):
        assert c.auth("carol", "carol-pw").cmd == "OK"
    assert len(helper_calls(helper_users)) == 3      # never fresh: every login asks the helper
    text = open(a.conf).read()
    with open(a.conf, "w") as f:
        f.write(text.replace("positive-ttl = 0s", "positive-ttl = 1h"))
    os.kill(a.proc.pid, signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in a.log_text(), 10, "reload")
    assert c.auth("carol", "carol-pw").cmd == "OK"   # fills with the new TTL
    for i in range(5):
        assert c.auth("carol", "carol-pw").cmd == "OK"
    assert len(helper_calls(helper_users)) == 4
    # a broken configuration is refused; the running one stays
    with open(a.conf, "w") as f:
        f.write(text.replace("positive-ttl = 0s", "positive-ttl = soon"))
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 1 and "positive-ttl" in r.stderr
    assert "reload refused" in a.log_text()
    assert c.auth("carol", "carol-pw").cmd == "OK"
    s, _ = parse(a.scrape())
    assert value(s, "authd_reloads_total", result="failed") == 1
    assert value(s, "authd_reloads_total", result="ok") == 1
    # a socket path cannot change at runtime: said clearly, old one kept
    with open(a.conf, "w") as f:
        f.write(text.replace(a.socket, a.socket + ".new"))
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 0, r.stderr
    assert "socket changed; restart authd to apply" in a.log_text()
    assert a.client().auth("carol", "carol-pw").cmd == "OK"


def test_reload_keeps_requests_in_flight(authd_factory, helper_users):
    with open(os.path.join(helper_users[1], "DELAY"), "w") as f:
        f.write("0.5")
    a = authd_factory([("ext", ext_auth(helper_users, timeout="5s"))])
    c = a.client()
    ids = [c.send_auth("carol", "carol-pw") for _ in range(2)]
    wait_until(lambda: len(helper_calls(helper_users)) >= 2, 10, "requests at the helper")
    assert authctl("-s", a.socket, "reload").returncode == 0
    got = sorted((c.read_reply(timeout=10).id, "OK") for _ in ids)
    assert got == sorted((i, "OK") for i in ids)
    # the old generation stops once its jobs are back
    wait_until(lambda: "generation with 1 authenticators stopped" in a.log_text(), 10,
               "old generation stopped")
    assert c.auth("carol", "carol-pw", timeout=10).cmd == "OK"


def test_process_title(authd_factory, helper_users):
    a = authd_factory([("ext", ext_auth(helper_users))])

    def title():
        with open("/proc/%d/cmdline" % a.proc.pid, "rb") as f:
            return f.read().split(b"\0")[0].decode()
    wait_until(lambda: title() == "authd: 0 in flight", 5, "title")
    open(os.path.join(helper_users[1], "HANG"), "w").close()
    c = a.client()
    c.send_auth("carol", "carol-pw")
    wait_until(lambda: title() == "authd: 1 in flight", 5, "title with one in flight")


def test_ticket_survives_reload(authd_factory, helper_users):
    from authdlib import master_redeem
    a = authd_factory([("ext", ext_auth(helper_users))])
    c = a.client()
    ticket = c.auth("carol", "carol-pw").kv["ticket"]
    assert authctl("-s", a.socket, "reload").returncode == 0
    r = master_redeem(a.master_socket, ticket, os.getpid())
    assert r.cmd == "USER" and r.kv["user"] == "carol", r
