"""pop3-load (bench/): against a scripted fake POP3 server on loopback
(tests/integration/bench_fakepop3.py) that misbehaves on request, it must
count the right kind of error and never run past its bound; its
percentiles on a known latency distribution must be within the
histogram's error; and against the real daemons it must drive clean
sessions."""

import json
import os
import subprocess
import time

import pytest

from bench_fakepop3 import FakePop3, default_messages
from conftest import BUILD, SANITIZER_MARKERS, sanitizer_env
from pop3lib import MailRoot, Pop3d, free_port, passwd_line

LOAD = os.path.join(BUILD, "pop3-load")
# The histogram's relative error: 32 sub-buckets per power of two, and a
# percentile is the upper bound of its bucket.
HIST_ERROR = 1 / 32


def run(port, *args, users=None, timeout=60, expect_rc=None):
    """Runs pop3-load; returns (JSON dict, wall seconds, stderr text)."""
    cmd = [LOAD, "--port", str(port), "-q"] + [str(a) for a in args]
    if users is not None:
        cmd += ["--users", users]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=sanitizer_env())
    wall = time.monotonic() - t0
    out, err = r.stdout.decode(), r.stderr.decode()
    for m in SANITIZER_MARKERS:
        assert m not in err, err
    lines = out.strip().splitlines()
    assert lines, "no output; stderr:\n" + err
    res = json.loads(lines[-1])
    if expect_rc is not None:
        errs = {k: v for k, v in res.get("errors", {}).items() if v}
        assert r.returncode == expect_rc, (r.returncode, errs, out, err)
    return res, wall, err


@pytest.fixture
def users(tmp_path):
    def make(n=4, prefix="u"):
        p = tmp_path / ("users-%s.txt" % prefix)
        p.write_text("".join("%s%04d pw%d\n" % (prefix, i, i) for i in range(n)))
        return str(p)
    return make


@pytest.fixture
def fake():
    started = []

    def make(**knobs):
        s = FakePop3(**knobs).start()
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()


def only_errors(res, **expected):
    """Checks that the error counters are exactly expected (others zero)."""
    errs = {k: v for k, v in res["errors"].items() if v}
    assert errs == expected, res
    assert res["error_total"] == sum(expected.values())


# ---- a correct server ----------------------------------------------------------

@pytest.mark.parametrize("script", ["login", "retr", "poll"])
@pytest.mark.parametrize("method", ["user", "plain"])
def test_clean_server(fake, users, script, method):
    srv = fake()
    res, _, _ = run(srv.port, "-c", 4, "-n", 20, "--script", script, "--method", method,
                    users=users(), expect_rc=0)
    assert res["sessions"] == 20 and res["failed"] == 0 and res["aborted"] == 0
    assert res["started"] == 20
    only_errors(res)
    assert res["login_us"]["count"] == 20 and res["session_us"]["count"] == 20
    assert res["stop_reason"] == "sessions"
    if script == "retr":
        msgs = default_messages()
        assert res["messages"] == 20 * len(msgs)
        assert res["retr_octets"] == 20 * sum(len(m) for m in msgs)
    else:
        assert res["messages"] == 0
    assert srv.sessions == 20


@pytest.mark.parametrize("depth", [2, 16])
def test_pipelined_retr(fake, users, depth):
    msgs = default_messages() * 7       # 21 messages, more than the depth
    srv = fake(messages=msgs)
    res, _, _ = run(srv.port, "-c", 2, "-n", 6, "--script", "retr", "--pipeline", depth,
                    users=users(), expect_rc=0)
    assert res["pipeline"] == depth and res["sessions"] == 6
    assert res["messages"] == 6 * len(msgs)
    assert res["retr_octets"] == 6 * sum(len(m) for m in msgs)
    bad = fake(messages=msgs, retr_size_delta=-3)
    res, _, _ = run(bad.port, "-c", 2, "-n", 4, "--script", "retr", "--pipeline", depth,
                    users=users(), expect_rc=3)
    only_errors(res, size_mismatch=4)


def test_users_round_robin_and_pattern(fake, tmp_path):
    srv = fake()
    res, _, _ = run(srv.port, "-c", 2, "-n", 6, "--user-pattern", "bob%03d",
                    "--user-count", 3, "--password", "secret-%d", expect_rc=0)
    assert res["sessions"] == 6
    # in turn, skipping a user still in a session (pop3-load never runs two
    # sessions of one user at once): each of the three, none more than its
    # turn and one skipped neighbour's
    assert set(srv.logins) == {"bob000", "bob001", "bob002"}, srv.logins
    assert all(srv.logins.count(u) <= 3 for u in set(srv.logins)), srv.logins
    assert len(srv.logins) == 6


# ---- misbehaving servers: each error kind, and the bound ----------------------

@pytest.mark.parametrize("knobs,script,kind", [
    ({"list_size_delta": 3}, "retr", "size_mismatch"),
    ({"retr_size_delta": -5}, "retr", "size_mismatch"),
    ({"announce_delta": 1}, "retr", "size_mismatch"),
    ({"stat_count_delta": 1}, "retr", "list_mismatch"),
    ({"close_after": "greeting"}, "login", "closed"),
    ({"close_after": "PASS"}, "login", "closed"),
    ({"close_in_body": True}, "retr", "closed"),
    ({"greeting": "-ERR go away"}, "login", "greeting"),
    ({"greeting": "HELLO"}, "login", "bad_status"),
    ({"bad_status": "OK 3 100"}, "login", "bad_status"),
    ({"bare_lf": True}, "login", "bad_line"),
    ({"bare_lf": True, "greeting": "+OK fine"}, "login", "bad_line"),
    ({"pass_reply": "-ERR [AUTH] Authentication failed"}, "login", "auth_failed"),
    ({"pass_reply": "-ERR [SYS/TEMP] try later"}, "poll", "auth_tempfail"),
    ({"pass_reply": "-ERR [IN-USE] locked"}, "login", "in_use"),
])
def test_each_error_kind(fake, users, knobs, script, kind):
    srv = fake(**knobs)
    res, wall, _ = run(srv.port, "-c", 2, "-n", 6, "--script", script, "--timeout", "2s",
                       users=users(), expect_rc=3)
    only_errors(res, **{kind: 6})
    assert res["sessions"] == 0 and res["failed"] == 6
    assert wall < 10


def test_missing_terminator_is_unterminated_and_bounded(fake, users):
    srv = fake(no_terminator=True)
    res, wall, _ = run(srv.port, "-c", 3, "-n", 3, "--script", "retr", "--timeout", "1s",
                       users=users(), expect_rc=3)
    only_errors(res, unterminated=3)
    assert 1.0 <= wall < 5


def test_slow_replies_time_out(fake, users):
    srv = fake(pass_delay=lambda u: 3.0)
    res, wall, _ = run(srv.port, "-c", 2, "-n", 2, "--timeout", "500ms", users=users(),
                       expect_rc=3)
    only_errors(res, timeout=2)
    assert wall < 3


def test_slow_but_within_timeout_is_no_error(fake, users):
    srv = fake(reply_delay=0.05)
    res, _, _ = run(srv.port, "-c", 2, "-n", 4, "--timeout", "2s", users=users(),
                    expect_rc=0)
    assert res["sessions"] == 4
    # greeting, USER, PASS, STAT, QUIT: each reply 50 ms late
    assert res["session_us"]["p50"] >= 5 * 50000
    assert res["login_us"]["p50"] >= 2 * 50000


def test_dribbling_server_cannot_hold_a_session(fake, users):
    """A deadline per reply, not per inactivity: one byte every 100 ms
    keeps the connection active but the greeting never completes in time."""
    srv = fake(dribble=0.1)
    res, wall, _ = run(srv.port, "-c", 2, "-n", 2, "--timeout", "1s", users=users(),
                       expect_rc=3)
    only_errors(res, timeout=2)
    assert wall < 4


def test_no_close_after_quit(fake, users):
    srv = fake(no_close=True)
    res, wall, _ = run(srv.port, "-c", 2, "-n", 2, "--timeout", "1s", users=users(),
                       expect_rc=3)
    only_errors(res, no_close=2)
    # the login and the session were measured all the same
    assert res["login_us"]["count"] == 2 and res["session_us"]["count"] == 2
    assert wall < 4


def test_silent_server_duration_bound(fake, users):
    """-d bounds the run even when no reply ever comes: the sessions in
    flight get --grace, then they are aborted."""
    srv = fake(silent=True)
    res, wall, _ = run(srv.port, "-c", 5, "-d", "1s", "--timeout", "30s", "--grace", "1s",
                       users=users(), expect_rc=0)
    assert res["aborted"] == 5 and res["sessions"] == 0 and res["error_total"] == 0
    assert res["stop_reason"] == "duration"
    assert 2.0 <= wall < 5


def test_max_time_bounds_a_session_count_run(fake, users):
    srv = fake(silent=True)
    res, wall, _ = run(srv.port, "-c", 2, "-n", 100, "--timeout", "60s", "--max-time", "1s",
                       users=users(), expect_rc=0)
    assert res["stop_reason"] == "max-time" and res["aborted"] == 2
    assert wall < 4


def test_connection_refused(users):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()       # nothing listens there now
    res, wall, _ = run(port, "-c", 2, "-d", "1s", users=users(), expect_rc=3)
    assert res["errors"]["connect"] > 0
    only_errors(res, connect=res["errors"]["connect"])
    # failing slots back off (10 ms) instead of spinning
    assert res["errors"]["connect"] < 2 * 1.5 / 0.010
    assert wall < 4


def test_sigterm_reports(fake, users):
    srv = fake(silent=True)
    p = subprocess.Popen([LOAD, "--port", str(srv.port), "-q", "-c", "3", "-d", "60s",
                          "--users", users()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sanitizer_env())
    time.sleep(0.5)
    p.terminate()
    out, err = p.communicate(timeout=10)
    res = json.loads(out.decode().strip().splitlines()[-1])
    assert res["stop_reason"] == "signal" and res["aborted"] == 3


# ---- measurement ---------------------------------------------------------------

def test_percentiles_of_a_known_distribution(fake, users):
    """User i's PASS is answered after 100 + i ms (i = 0..999): the login
    latencies are that uniform distribution plus loopback overheads: a few
    milliseconds, more on a loaded machine, so up to SLACK_US are allowed
    (an error of the histogram's ranks would be off by far more: 100 ms
    separate p50 from p60).  Each reported percentile must lie between the
    exact percentile of the delays (a histogram bucket's upper bound is
    never below its values) and that value plus the overheads plus the
    histogram's error."""
    n = 1000
    srv = fake(pass_delay=lambda u: (100 + int(u[1:])) / 1000)
    res, _, _ = run(srv.port, "-c", 200, "-n", n, "--timeout", "5s", users=users(n),
                    expect_rc=0)
    assert res["sessions"] == n
    delays = sorted((100 + i) * 1000 for i in range(n))     # microseconds
    lat = res["login_us"]
    assert lat["count"] == n
    SLACK_US = 50000
    for q, key in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p999")]:
        exact = delays[min(int(q * n), n - 1)]      # the histogram's rank rule
        got = lat[key]
        assert exact <= got <= (exact + SLACK_US) * (1 + HIST_ERROR), (key, exact, got, lat)
    # the maximum is exact (not a bucket bound): the slowest overhead shows
    assert delays[-1] <= lat["max"] <= delays[-1] + SLACK_US
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    # the mean is exact (sum / count), up to the overheads
    assert 599500 <= lat["mean"] <= 599500 + SLACK_US


def test_login_cdf_is_monotonic_and_agrees_with_the_percentiles(fake, users):
    """login_cdf (bench/plot-results draws the CDF from it): [q, us]
    pairs with q rising from near 0 to 1 and us never falling; the pairs
    at 0.5, 0.99 and 1 are exactly p50, p99 and max; and on the known
    uniform distribution of test_percentiles_of_a_known_distribution (user
    i answered after 100 + i ms, here 200 users) each pair lies between
    the exact quantile and it plus the overheads and the histogram's
    error.  The slow population has its own; an empty histogram gives []."""
    n = 200
    srv = fake(pass_delay=lambda u: ((100 + int(u[1:])) / 1000) if u.startswith("f")
               else 0.3)
    res, _, _ = run(srv.port, "-c", 50, "-n", n, "--timeout", "5s", "--slow-users",
                    users(2, "s"), "--slow-concurrency", 1, users=users(n, "f"),
                    expect_rc=0)
    for pop in (res, res["slow"]):
        cdf, lat = pop["login_cdf"], pop["login_us"]
        assert len(cdf) >= 20, cdf
        qs = [q for q, _ in cdf]
        us = [v for _, v in cdf]
        assert all(0 < q <= 1 for q in qs) and qs == sorted(set(qs)), qs
        assert qs[0] <= 0.01 and qs[-1] == 1, qs
        assert us == sorted(us) and us[0] > 0, cdf
        at = dict((q, v) for q, v in cdf)
        assert at[0.5] == lat["p50"] and at[0.99] == lat["p99"], (cdf, lat)
        assert at[0.9] == lat["p90"] and at[0.999] == lat["p999"], (cdf, lat)
        assert at[1] == lat["max"], (cdf, lat)
    assert res["sessions"] == n
    delays = sorted((100 + i) * 1000 for i in range(n))     # microseconds
    SLACK_US = 50000
    for q, got in res["login_cdf"]:
        exact = delays[min(int(q * n), n - 1)]      # the histogram's rank rule
        assert exact <= got <= (exact + SLACK_US) * (1 + HIST_ERROR), (q, exact, got)
    assert res["slow"]["login_cdf"][0][1] >= 300000
    # no login at all (a refused connection): an empty list, still valid JSON
    res, _, _ = run(free_port(), "-c", 1, "-n", 1, "--timeout", "2s", users=users())
    assert res["login_cdf"] == [] and res["login_us"]["count"] == 0


def test_slow_population_reported_apart(fake, users):
    srv = fake(pass_delay=lambda u: 0.3 if u.startswith("s") else 0)
    res, _, _ = run(srv.port, "-c", 2, "-d", "2s", "--slow-users", users(2, "s"),
                    "--slow-concurrency", 2, users=users(4, "f"), expect_rc=0)
    slow = res["slow"]
    assert slow["concurrency"] == 2 and slow["sessions"] >= 4
    assert slow["login_us"]["p50"] >= 300000
    assert res["login_us"]["p99"] < 300000
    assert res["sessions"] > slow["sessions"]


def test_rate_limit(fake, users):
    srv = fake()
    res, wall, _ = run(srv.port, "-c", 10, "-n", 40, "--rate", 40, users=users(), expect_rc=0)
    assert res["sessions"] == 40
    # 40 connects at 40/s: the last one starts about 975 ms after the first
    assert res["elapsed_s"] >= 0.9


# ---- the open loop (--open-loop) -------------------------------------------------

def test_open_loop_offers_the_rate_whatever_the_latency(fake, users):
    """Logins that take 0.5 s: a closed loop of 4 slots does about 8 a
    second whatever --rate says; the open loop starts 40 a second, each
    without waiting for another, and the goodput follows."""
    srv = fake(pass_delay=lambda u: 0.5)
    closed, _, _ = run(srv.port, "-c", 4, "--rate", 40, "-d", "2s", users=users(200),
                       expect_rc=0)
    assert closed["sessions"] <= 20 and "open_loop" not in closed
    res, _, _ = run(srv.port, "--open-loop", "--rate", 40, "-c", 100, "-d", "2s",
                    users=users(200), expect_rc=0)
    ol = res["open_loop"]
    assert 79 <= ol["scheduled"] <= 81, ol
    assert ol["overflow"] == 0 and ol["started"] == ol["scheduled"] == res["sessions"]
    assert res["logins_ok"] == res["sessions"]
    assert 38 <= ol["goodput_per_s"] <= 42 and ol["offered_per_s"] >= 39, ol
    assert 1.9 <= ol["window_s"] <= 2.2
    assert res["login_us"]["p50"] >= 500000


def test_open_loop_bounds_in_flight_and_counts_overflow(fake, users):
    """-c bounds the sessions in flight: arrivals past it are not started
    but counted, so a report shows when the load was not delivered."""
    srv = fake(pass_delay=lambda u: 2.0)
    res, wall, _ = run(srv.port, "--open-loop", "--rate", 50, "-c", 5, "-d", "1s",
                       "--grace", "5s", users=users(20), expect_rc=0)
    ol = res["open_loop"]
    assert 49 <= ol["scheduled"] <= 51, ol
    assert ol["started"] == 5 and res["sessions"] == 5
    assert ol["overflow"] == ol["scheduled"] - 5
    assert wall < 6


def test_open_loop_session_count(fake, users):
    """-n counts arrivals: the run ends when the last one is done, its
    window is the arrivals' (n / rate), not the last session's end."""
    srv = fake(pass_delay=lambda u: 0.3)
    res, _, _ = run(srv.port, "--open-loop", "--rate", 20, "-c", 50, "-n", 10,
                    users=users(20), expect_rc=0)
    ol = res["open_loop"]
    assert ol["scheduled"] == ol["started"] == res["sessions"] == 10
    assert 0.45 <= ol["window_s"] <= 0.55, ol
    assert res["stop_reason"] == "sessions"


def test_open_loop_latency_by_outcome(fake, tmp_path):
    """Accepted logins, "-ERR [SYS/TEMP]" answers and turned-away
    connections are timed apart: a prompt refusal is not hidden among
    slow acceptances, nor the other way round."""
    users = tmp_path / "mixed.txt"
    users.write_text("".join("%s%02d pw\n" % ("ok" if i % 2 else "tf", i) for i in range(40)))
    srv = fake(pass_delay=lambda u: 0.2 if u.startswith("ok") else 0.03,
               pass_reply=lambda u: "+OK in" if u.startswith("ok") else
               "-ERR [SYS/TEMP] Server busy, try again later")
    res, _, _ = run(srv.port, "--open-loop", "--rate", 40, "-c", 40, "-n", 40,
                    users=str(users), expect_rc=3)
    only_errors(res, auth_tempfail=20)
    assert res["logins_ok"] == 20 and res["login_us"]["count"] == 20
    assert res["login_us"]["p50"] >= 200000
    tf = res["tempfail_us"]
    assert tf["count"] == 20 and 30000 <= tf["p50"] < 150000, tf
    assert res["refused"] == 0 and res["refused_us"]["count"] == 0
    # a server that turns connections away at the greeting
    busy = fake(greeting="-ERR [SYS/TEMP] Too many connections")
    res, _, _ = run(busy.port, "--open-loop", "--rate", 50, "-c", 10, "-n", 20,
                    users=str(users), expect_rc=3)
    only_errors(res, greeting=20)
    assert res["refused"] == 20 and res["refused_us"]["count"] == 20
    assert res["refused_us"]["p99"] < 1000000
    assert res["logins_ok"] == 0 and res["open_loop"]["goodput_per_s"] == 0
    # nobody listening: connect refused
    res, _, _ = run(free_port(), "--open-loop", "--rate", 50, "-c", 10, "-n", 10,
                    users=str(users), expect_rc=3)
    only_errors(res, connect=10)
    assert res["refused"] == 10


def test_open_loop_usage():
    for args in (["--open-loop"], ["--open-loop", "--rate", 5, "--script", "idle"]):
        r = subprocess.run([LOAD, "--port", "1", "--user-pattern", "u%d", "--password", "p"] +
                           [str(a) for a in args], capture_output=True, timeout=10,
                           env=sanitizer_env())
        assert r.returncode == 2
        assert "error" in json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_progress_lines_and_csv(fake, users, tmp_path):
    srv = fake()
    csv = tmp_path / "series.csv"
    cmd = [LOAD, "--port", str(srv.port), "-c", "2", "-d", "2500ms", "--users", users(),
           "--csv", str(csv)]
    r = subprocess.run(cmd, capture_output=True, timeout=30, env=sanitizer_env())
    assert r.returncode == 0
    progress = [l for l in r.stderr.decode().splitlines() if l.startswith("pop3-load: ")]
    assert len(progress) == 2 and "sessions/s" in progress[0] and "p99" in progress[0]
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("t_s,sessions,errors,open,held,login_p50_us")
    assert len(rows) == 3 and all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)
    out = r.stdout.decode().strip().splitlines()
    assert "sessions/s" in r.stdout.decode() and "p99.9" in r.stdout.decode()
    assert json.loads(out[-1])["tool"] == "pop3-load"


def test_idle_holds_connections(fake):
    srv = fake()
    res, wall, _ = run(srv.port, "-c", 50, "-d", "1500ms", "--script", "idle", expect_rc=0)
    assert res["idle_held_peak"] == 50
    # at the end each idle connection says QUIT and counts as a session
    assert res["sessions"] == 50 and res["error_total"] == 0
    assert srv.sessions == 50


def test_idle_time_and_noop(fake):
    srv = fake()
    res, _, _ = run(srv.port, "-c", 4, "-d", "1500ms", "--script", "idle", "--idle-time",
                    "400ms", "--noop", "150ms", expect_rc=0)
    # each slot held about 3 connections one after the other
    assert res["sessions"] >= 8 and res["idle_held_peak"] == 4


def test_several_targets(fake, users):
    a, b = fake(), fake()
    res, _, _ = run(a.port, "--target", "127.0.0.1:%d" % a.port,
                    "--target", "127.0.0.1:%d" % b.port, "-c", 4, "-n", 20,
                    users=users(), expect_rc=0)
    assert [t["sessions"] for t in res["targets"]] == [10, 10]
    assert a.sessions == 10 and b.sessions == 10


# ---- TLS ------------------------------------------------------------------------

@pytest.fixture
def tls_ctx(tmp_path):
    import ssl
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_tls(fake, users, tls_ctx, mode):
    srv = fake(**{"tls" if mode == "implicit" else "stls": tls_ctx})
    res, _, _ = run(srv.port, "-c", 2, "-n", 6, "--tls", mode, "--script", "retr",
                    users=users(), expect_rc=0)
    assert res["sessions"] == 6 and res["tls"] == mode
    assert res["messages"] == 18


def test_stls_refused(fake, users):
    srv = fake()        # answers -ERR to STLS
    res, _, _ = run(srv.port, "-c", 1, "-n", 2, "--tls", "stls", users=users(), expect_rc=3)
    only_errors(res, err_reply=2)


def test_tls_against_plain_server(fake, users):
    srv = fake()
    res, wall, _ = run(srv.port, "-c", 1, "-n", 2, "--tls", "implicit", "--timeout", "1s",
                       users=users(), expect_rc=3)
    only_errors(res, tls=2)
    assert wall < 4


# ---- usage ------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--script", "nope"], ["-c", "0"], ["--bogus"],
                                  ["--users", "/nonexistent"], ["-d", "forever"]])
def test_usage_errors_end_with_json(args):
    r = subprocess.run([LOAD] + args, capture_output=True, timeout=10, env=sanitizer_env())
    assert r.returncode == 2
    res = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert "error" in res


# ---- the real daemons -------------------------------------------------------------

def real_users(mr, tmp_path):
    """Four users with two messages each; returns (passwd-file, load list)."""
    msgs = [("new/1000000001.M1.host", b"Subject: a\n\nhello\n.\n..x\n"),
            ("cur/1000000002.M2.host:2,", b"Subject: b\n\n" + b"y" * 5000 + b"\n")]
    lines, ulist = "", ""
    for i in range(4):
        name = "load%d" % i
        md = mr.maildir(name, msgs)
        lines += passwd_line(name, "pw-%d" % i, os.path.dirname(md))
        ulist += "%s pw-%d\n" % (name, i)
    pw = tmp_path / "passwd"
    pw.write_text(lines)
    ul = tmp_path / "load-users"
    ul.write_text(ulist)
    return str(pw), str(ul)


def test_real_daemons_tls(authd_factory, tmp_path):
    """STLS on the plain port and POP3S on the TLS port of the real pop3d,
    the certificate verified against --tls-ca."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    os.chmod(key, 0o600)
    mr = MailRoot()
    try:
        pw, ul = real_users(mr, tmp_path)
        a = authd_factory([("pw", {"type": "passwd-file", "path": pw})], cache={"size": "1M"})
        tls_port = free_port()
        p = Pop3d(a, tmp_path, {"listen-tls": "127.0.0.1:%d" % tls_port, "starttls": "yes",
                                "tls-cert-file": str(cert), "tls-key-file": str(key)}).start()
        try:
            for port, mode, method in [(p.port, "stls", "user"), (tls_port, "implicit", "plain")]:
                res, _, err = run(port, "-c", 4, "-n", 12, "--tls", mode, "--method", method,
                                  "--tls-ca", str(cert), "--script", "retr", users=ul,
                                  expect_rc=0)
                assert res["sessions"] == 12 and res["messages"] == 24, (res, err)
            assert p.log_text().count("secured=yes") >= 24
        finally:
            p.stop()
    finally:
        mr.cleanup()


def test_real_daemons(authd_factory, tmp_path):
    """Clean sessions against authd + pop3d: login, poll and retr with both
    login methods; sizes and the terminator checked on every message."""
    mr = MailRoot()
    try:
        pw, ul = real_users(mr, tmp_path)
        a = authd_factory([("pw", {"type": "passwd-file", "path": pw})], cache={"size": "1M"})
        p = Pop3d(a, tmp_path).start()
        try:
            for script, method in [("login", "user"), ("poll", "plain"), ("retr", "user")]:
                res, _, err = run(p.port, "-c", 4, "-n", 12, "--script", script,
                                  "--method", method, users=ul, expect_rc=0)
                assert res["sessions"] == 12 and res["error_total"] == 0, (res, err)
                if script == "retr":
                    assert res["messages"] == 24
        finally:
            p.stop()
    finally:
        mr.cleanup()
