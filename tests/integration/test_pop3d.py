"""pop3d integration tests: the real authd and pop3d on 127.0.0.1, real
clients (Python's poplib, curl, mpop/fetchmail) and raw sockets."""

import base64
import os
import poplib
import signal
import socket
import subprocess
import time

import pytest

from authdlib import wait_until
from conftest import HELPERS, PYTHON
from pop3lib import (IS_ROOT, TEST_UID, Client, MailRoot, Pop3d, passwd_line,
                     user_uid)

PLAIN_MSG = b"From: a@example.org\nSubject: one\n\nHello\n.\n..dots\n.x\nend\n"
CRLF_MSG = b"From: b@example.org\r\nSubject: two\r\n\r\nbody line 1\r\nbody line 2\r\n"
BINARY_MSG = (b"From: c@example.org\nSubject: bin\n\n" +
              bytes(range(1, 10)) + b"\n" + bytes(range(11, 256)) + b"\n" +
              b"no final newline")


def wire(msg):
    """What RETR sends (unstuffed): CRLF line ends and a final CRLF."""
    out = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


@pytest.fixture
def mailroot():
    m = MailRoot()
    yield m
    m.cleanup()


@pytest.fixture
def world(authd_factory, tmp_path, mailroot):
    """authd with a passwd-file of three users and pop3d in front of it."""
    started = []

    def make(pop3d_keys=None, users=None, auths=None, start=True):
        md = {}
        lines = ""
        for name, msgs in (users or {"alice": [("new/1000000001.M1.host", PLAIN_MSG),
                                               ("cur/1000000002.M2.host:2,", CRLF_MSG),
                                               ("new/1000000003.M3.host", BINARY_MSG)],
                                     "bob": [],
                                     "carol": [("new/1.M9.host", b"Subject: c\n\nc\n")]}).items():
            md[name] = mailroot.maildir(name, msgs)
            lines += passwd_line(name, name + "-pw", os.path.dirname(md[name]))
        pw = tmp_path / "users"
        pw.write_text(lines)
        a = authd_factory(auths or [("pw", {"type": "passwd-file", "path": str(pw)})])
        p = Pop3d(a, tmp_path, pop3d_keys)
        started.append(p)
        if start:
            p.start()
        p.authd = a
        p.maildirs = md
        return p
    yield make
    for p in started:
        p.stop()


def login(port, user="alice"):
    c = poplib.POP3("127.0.0.1", port, timeout=15)
    c.user(user)
    c.pass_(user + "-pw")
    return c


def test_poplib_full_session(world):
    p = world()
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    caps = c.capa()
    for k in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL"):
        assert k in caps, caps
    assert caps["SASL"] == ["PLAIN"]
    c.user("alice")
    assert c.pass_("alice-pw").startswith(b"+OK")
    caps = c.capa()
    assert "USER" not in caps and "SASL" not in caps and "TOP" in caps
    sizes = [len(wire(m)) for m in (PLAIN_MSG, CRLF_MSG, BINARY_MSG)]
    assert c.stat() == (3, sum(sizes))
    resp, listing, _ = c.list()
    assert [int(x.split()[1]) for x in listing] == sizes
    resp, uidls, _ = c.uidl()
    assert [x.split()[1] for x in uidls] == [b"1000000001.M1.host", b"1000000002.M2.host",
                                             b"1000000003.M3.host"]
    assert c.uidl(2).split()[2] == b"1000000002.M2.host"
    for i, m in enumerate((PLAIN_MSG, CRLF_MSG, BINARY_MSG), 1):
        resp, lines, octets = c.retr(i)
        assert b"\r\n".join(lines) + b"\r\n" == wire(m)
    resp, lines, _ = c.top(2, 1)
    assert lines == [b"From: b@example.org", b"Subject: two", b"", b"body line 1"]
    c.dele(1)
    c.dele(3)
    with pytest.raises(poplib.error_proto):
        c.retr(1)
    assert c.stat()[0] == 1
    c.rset()
    assert c.stat()[0] == 3
    c.dele(1)
    assert c.quit().startswith(b"+OK")

    c = login(p.port)
    assert c.stat() == (2, sizes[1] + sizes[2])
    resp, uidls, _ = c.uidl()
    assert [x.split()[1] for x in uidls] == [b"1000000002.M2.host", b"1000000003.M3.host"]
    c.quit()
    md = p.maildirs["alice"]
    assert sorted(os.listdir(os.path.join(md, "cur"))) == [
        "1000000002.M2.host:2,S", "1000000003.M3.host:2,S"]
    assert os.listdir(os.path.join(md, "new")) == []
    log = p.log_text()
    assert "login: user=alice rip=127.0.0.1 method=USER secured=no pid=" in log
    assert "logout: user=alice rip=127.0.0.1 reason=QUIT retr=3/" in log


def test_auth_plain_both_ways(world):
    p = world()
    c = Client(p.port)
    resp = base64.b64encode(b"\0alice\0alice-pw").decode()
    assert c.cmd("AUTH PLAIN " + resp).startswith("+OK")
    assert c.cmd("STAT").startswith("+OK 3 ")
    assert c.cmd("QUIT").startswith("+OK")
    c.close()
    c = Client(p.port)
    assert c.cmd("AUTH PLAIN") == "+ "
    assert c.cmd(base64.b64encode(b"\0bob\0bob-pw").decode()).startswith("+OK")
    assert c.cmd("STAT") == "+OK 0 0"
    c.cmd("QUIT")
    c.close()
    # poplib's own SASL-less path is USER/PASS; check the log names PLAIN
    assert "login: user=alice rip=127.0.0.1 method=PLAIN" in p.log_text()
