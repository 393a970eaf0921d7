"""EXPIRE (RFC 2449 section 6.7) is enforced as advertised: with 0,
messages retrieved (RETR or TOP) in a session are removed at its UPDATE;
with N days, messages first retrieved N days ago or more are removed at
the UPDATE of a later session; never without UPDATE; nothing without a
policy.  The real authd and pop3d, real clients, files checked on disk.

N days without waiting: the first retrieval time is kept in the
maildrop's "pop3d-expire" file, one "base unix-seconds" line per message
(written by the session at UPDATE).  The tests read what the server
wrote, then put the time back by N days the way the server would have
written it, and log in again."""

import os
import re
import time

import pytest

from pop3lib import Client, maildir_contents
from promparse import parse, value
# the pop3d suite's fixtures and helpers
from test_pop3d import login, mailroot, world  # noqa: F401

DAY = 86400
M1 = b"From: a@example.org\nSubject: one\n\nfirst\n"
M2 = b"From: b@example.org\nSubject: two\n\nsecond\n"
M3 = b"From: c@example.org\nSubject: three\n\nthird\n"
MSGS = [("new/1000.A.host", M1), ("new/2000.B.host", M2), ("new/3000.C.host", M3)]


def record(md):
    """pop3d-expire as {base: unix time}."""
    try:
        with open(os.path.join(md, "pop3d-expire")) as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    return {b: int(t) for b, t in re.findall(r"^(\S+) (\d+)$", text, re.M)}


def set_record(md, rec):
    """Rewrites pop3d-expire in place (keeping its owner) as the server
    writes it."""
    with open(os.path.join(md, "pop3d-expire"), "w") as f:
        f.write("".join("%s %d\n" % kv for kv in rec.items()))


def test_expire_0_removes_what_was_retrieved_at_quit(world):
    p = world(pop3d_keys={"expire": "0"}, users={"alice": MSGS})
    md = p.maildirs["alice"]
    before = parse(p.scrape())[0]
    c = login(p.port)
    assert c.capa()["EXPIRE"] == ["0"]
    c.retr(1)
    c.top(2, 0)
    assert c.stat()[0] == 3                 # still listed until UPDATE
    assert c.quit().startswith(b"+OK")
    log = p.wait_log(r"logout: user=alice .*reason=QUIT")
    assert maildir_contents(md) == [M3]
    assert re.search(r"logout: user=alice .* del=0/0 expired=2/\d+ size=3/", log), log
    after = parse(p.scrape())[0]
    assert value(after, "pop3d_messages_total", op="expire") - \
        value(before, "pop3d_messages_total", op="expire") == 2


def test_expire_0_no_update_no_removal(world):
    """A dropped connection or an autologout has no UPDATE (RFC 1939)."""
    p = world(pop3d_keys={"expire": "0"}, users={"alice": MSGS})
    md = p.maildirs["alice"]
    c = Client(p.port)
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK")
    assert c.cmd("RETR 1").startswith("+OK")
    c.multiline()
    c.close()
    p.wait_log(r"logout: user=alice .*reason=disconnected")
    assert maildir_contents(md) == sorted([M1, M2, M3])
    assert record(md) == {}


def test_expire_days_removes_at_a_later_quit(world):
    p = world(pop3d_keys={"expire": "2"}, users={"alice": MSGS})
    md = p.maildirs["alice"]
    t0 = int(time.time())
    c = login(p.port)
    assert c.capa()["EXPIRE"] == ["2"]
    c.retr(1)
    c.top(2, 1)
    c.quit()
    p.wait_log(r"logout: user=alice .*reason=QUIT", 1)
    t1 = int(time.time())
    # kept (RETR'd: seen, in cur/), the first retrieval on record
    assert maildir_contents(md) == sorted([M1, M2, M3])
    rec = record(md)
    assert set(rec) == {"1000.A.host", "2000.B.host"}, rec
    assert all(t0 <= t <= t1 for t in rec.values()), (t0, rec, t1)
    # a second retrieval does not move the first one
    rec = {"1000.A.host": rec["1000.A.host"] - DAY, "2000.B.host": rec["2000.B.host"]}
    set_record(md, rec)
    c = login(p.port)
    c.retr(1)
    c.quit()
    p.wait_log(r"logout: user=alice .*reason=QUIT", 2)
    assert record(md)["1000.A.host"] == rec["1000.A.host"]
    assert maildir_contents(md) == sorted([M1, M2, M3])
    # two days later, as far as the record says: a session that only
    # logs in and QUITs removes the first, not the one retrieved a day ago
    rec["1000.A.host"] -= DAY + 1           # now two days and a second ago
    set_record(md, rec)
    c = login(p.port)
    assert c.stat()[0] == 3                 # listed until UPDATE
    c.quit()
    log = p.wait_log(r"logout: user=alice .*reason=QUIT", 3)
    assert maildir_contents(md) == sorted([M2, M3])
    assert set(record(md)) == {"2000.B.host"}
    assert re.findall(r"logout: user=alice .* expired=(\d+)/", log) == ["0", "0", "1"]


def test_expire_days_no_update_no_removal(world):
    p = world(pop3d_keys={"expire": "1"}, users={"alice": MSGS})
    md = p.maildirs["alice"]
    c = login(p.port)
    c.retr(3)
    c.quit()
    p.wait_log(r"logout: user=alice .*reason=QUIT")
    set_record(md, {"3000.C.host": int(time.time()) - 5 * DAY})
    c = Client(p.port)
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK")
    c.close()                               # no QUIT
    p.wait_log(r"logout: user=alice .*reason=disconnected")
    assert maildir_contents(md) == sorted([M1, M2, M3])


def test_hostile_record_is_no_crash_and_no_loss(world):
    p = world(pop3d_keys={"expire": "3"}, users={"alice": MSGS})
    md = p.maildirs["alice"]
    with open(os.path.join(md, "pop3d-expire"), "wb") as f:
        f.write(b"1000.A.host 99999999999999999999999999\n2000.B.host -5\n"
                b"3000.C.host 12abc\n\x00\xff\n" + b"x" * 100000 + b" 1\n" +
                b"2000.B.host\n 7\n" + b"1000.A.host " + b"9" * 600 + b"\n")
    c = login(p.port)
    assert c.stat()[0] == 3
    c.quit()
    p.wait_log(r"logout: user=alice .*reason=QUIT")
    assert maildir_contents(md) == sorted([M1, M2, M3])
    assert p.proc.poll() is None


@pytest.mark.parametrize("expire", ["NEVER", None])
def test_no_policy_no_removal_no_record(world, expire):
    p = world(pop3d_keys={"expire": expire} if expire else {}, users={"alice": MSGS})
    md = p.maildirs["alice"]
    c = login(p.port)
    assert ("EXPIRE" in c.capa()) == (expire is not None)
    c.retr(1)
    c.top(2, 0)
    c.quit()
    log = p.wait_log(r"logout: user=alice .*reason=QUIT")
    assert maildir_contents(md) == sorted([M1, M2, M3])
    assert not os.path.exists(os.path.join(md, "pop3d-expire"))
    assert " expired=" not in log
