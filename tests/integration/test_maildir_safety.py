"""Issue 13: no message is lost at UPDATE, whatever else holds its name
(copies that share a base, a cur/ name taken with other flags); TOP with
a huge line count; a maildrop that cannot be opened is counted and logged
as what it is.  The real authd and pop3d, real clients (poplib)."""

import os
import poplib
import re

import pytest

from pop3lib import IS_ROOT, Client, maildir_contents, passwd_line
from promparse import parse, value
# the pop3d suite's fixtures and helpers
from test_pop3d import login, mailroot, wire, world  # noqa: F401

A = b"From: a@example.org\nSubject: copy a\n\nthe new/ copy\n"
B = b"From: b@example.org\nSubject: copy b\n\nthe cur/ copy, another text\n"
C = b"From: c@example.org\nSubject: other\n\nanother message\n"


def names(md):
    return sorted("%s/%s" % (sub, n) for sub in ("new", "cur")
                  for n in os.listdir(os.path.join(md, sub)))


# (file a, file b, messages to RETR: 1 is a, 2 is b)
CASES = [
    ("new/1000.X.host", "cur/1000.X.host:2,S", (1, 2)),
    ("new/1000.X.host", "cur/1000.X.host:2,S", (1,)),
    ("new/1000.X.host", "cur/1000.X.host:2,S", (2,)),
    # the name a retrieved message should get exists with other flags
    ("cur/1000.X.host:2,F", "cur/1000.X.host:2,FS", (1,)),
    ("cur/1000.X.host:2,F", "cur/1000.X.host:2,FS", (1, 2)),
    ("new/1000.X.host:2,F", "cur/1000.X.host:2,FS", (1,)),
]


@pytest.mark.parametrize("a,b,retr", CASES)
def test_copies_sharing_a_base_survive_retr_and_quit(world, a, b, retr):
    p = world(users={"alice": [(a, A), (b, B), ("new/2000.Y.host", C)]})
    md = p.maildirs["alice"]
    c = login(p.port)
    assert c.stat()[0] == 3
    resp, uidls, _ = c.uidl()
    assert len(set(x.split()[1] for x in uidls)) == 3      # unique, as ever
    for n in retr:
        resp, lines, _ = c.retr(n)
        assert b"\r\n".join(lines) + b"\r\n" == wire((A, B)[n - 1])
    assert c.quit().startswith(b"+OK")
    p.wait_log(r"logout: user=alice .*reason=QUIT")
    # every message's bytes are still on disk, each once
    assert maildir_contents(md) == sorted([A, B, C]), names(md)
    assert os.listdir(os.path.join(md, "tmp")) == []
    # the retrieved ones are seen, in cur/
    for n in names(md):
        with open(os.path.join(md, n), "rb") as f:
            body = f.read()
        if body in [(A, B)[i - 1] for i in retr]:
            assert n.startswith("cur/") and re.search(r":2,[A-Z]*S[A-Z]*$", n), n
    # and the next session lists all three
    d = login(p.port)
    assert d.stat()[0] == 3
    got = sorted(b"\r\n".join(d.retr(i)[1]) + b"\r\n" for i in (1, 2, 3))
    assert got == sorted(wire(m) for m in (A, B, C))
    d.quit()


def test_dele_after_the_name_changed_hands(world):
    """DELE'd message renamed away by an MUA mid-session, another delivered
    under its old name: QUIT removes neither, and says so."""
    p = world(users={"alice": [("new/1000.X.host", A), ("new/2000.Y.host", C)]})
    md = p.maildirs["alice"]
    c = login(p.port)
    c.dele(1)
    os.rename(os.path.join(md, "new/1000.X.host"), os.path.join(md, "cur/1000.X.host:2,T"))
    with open(os.path.join(md, "new/1000.X.host"), "wb") as f:
        f.write(B)
    with pytest.raises(poplib.error_proto) as e:
        c.quit()
    assert b"could not be removed" in e.value.args[0]
    assert maildir_contents(md) == sorted([A, B, C])
    assert "was replaced by another file since the listing; kept" in p.log_text()


def test_top_with_a_huge_line_count_sends_everything(world):
    p = world(users={"alice": [("new/1.a", C)]})
    c = login(p.port)
    whole = wire(C)
    for n in (2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64, 10 ** 30):
        resp, lines, _ = c.top(1, n)
        assert resp.startswith(b"+OK"), (n, resp)
        assert b"\r\n".join(lines) + b"\r\n" == whole, n
    c.quit()
    r = Client(p.port)
    r.cmd("USER alice")
    assert r.cmd("PASS alice-pw").startswith("+OK")
    assert r.cmd("TOP 1 -1").startswith("-ERR Syntax")
    r.cmd("QUIT")


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def test_maildrop_that_cannot_be_opened_is_no_ok_login(world, mailroot):
    """Missing, unreadable, in use, or a maildrop template that cannot be
    expanded: -ERR to the client, a logout line with reason=maildrop after
    the login line, and result="maildrop_error", not "ok"."""
    p = world(users={"alice": [("new/1.a", C)], "locked": []},
              extra_passwd=passwd_line("ghost", "ghost-pw", mailroot.path + "/nohome") +
              passwd_line("shut", "shut-pw", mailroot.path + "/shut") +
              passwd_line("badtmpl", "badtmpl-pw", mailroot.path + "/x",
                          maildrop="maildir:relative/%u"))
    shut = mailroot.maildir("shut")
    os.chmod(shut, 0)
    try:
        if not IS_ROOT and os.access(shut, os.R_OK):
            pytest.skip("cannot make a directory unreadable here")
        before = parse(p.scrape())[0]
        held = login(p.port, "locked")          # holds its maildrop's lock
        for user, code in (("ghost", "[SYS/PERM]"), ("shut", "[SYS/PERM]"),
                           ("badtmpl", "[SYS/PERM]")):
            c = Client(p.port)
            c.cmd("USER " + user)
            r = c.cmd("PASS %s-pw" % user)
            assert r.startswith("-ERR " + code), (user, r)
            assert c.closed()
        # the same user again while the first session holds the lock
        c = Client(p.port)
        c.cmd("USER locked")
        r = c.cmd("PASS locked-pw")
        # max-sessions-per-user (10) lets it through to the lock
        assert r.startswith("-ERR [IN-USE]"), r
        assert c.closed()
        held.quit()
        ok = login(p.port, "alice")
        ok.quit()
        log = p.wait_log(r"logout: user=alice ", 1)
        after = parse(p.scrape())[0]
    finally:
        os.chmod(shut, 0o700)
    assert delta(before, after, "pop3d_logins_total", result="ok") == 2   # locked, alice
    assert delta(before, after, "pop3d_logins_total", result="maildrop_error") == 4
    assert delta(before, after, "pop3d_logins_total", result="session_error") == 0
    assert delta(before, after, "pop3d_sessions_ended_total", reason="maildrop") == 4
    assert delta(before, after, "pop3d_sessions_ended_total", reason="failed") == 0
    # every login line has its logout line, with the reason beside it
    for user in ("ghost", "shut", "badtmpl", "locked", "alice"):
        logins = re.findall(r"login: user=%s rip=\S+ .* pid=(\d+)$" % user, log, re.M)
        logouts = re.findall(r"logout: user=%s rip=\S+ reason=(\S+) " % user, log, re.M)
        assert len(logins) == len(logouts) >= 1, (user, log)
    for user, why in (("ghost", "maildrop does not exist"),
                      ("shut", "cannot open maildrop"),
                      ("badtmpl", "maildrop is not an absolute path"),
                      ("locked", "maildrop is in use by another session")):
        assert re.search(r"session: user=%s maildrop \S+: %s$" % (user, why), log, re.M), \
            (user, log)
        assert re.search(r"logout: user=%s rip=\S+ reason=maildrop " % user, log, re.M)
