"""A chain per service: an authenticator's `services` key puts it in the
chain of those services only.  Checked through the real authd, on its own
protocol and on the Dovecot-protocol socket Postfix uses, with the cache
on: an answer one service's chain gave is never another chain's, not even
from the cache, and `authctl flush USER` still finds every entry."""

import os
import signal

import pytest

from authdlib import wait_until
from conftest import authctl, ext_auth, helper_calls
from test_postfix_sasl import Dovecot, b64

pytestmark = pytest.mark.threaded


def chain(tmp_path, helper_users):
    """smtponly (passwd-file, services = smtp) then ext (every service):
    alice has one password in each, bob is only in smtponly."""
    users = tmp_path / "smtp-users"
    users.write_text("alice:{PLAIN}smtp-pw:3001:3001::/home/alice::\n"
                     "bob:{PLAIN}bob-pw:3002:3002::/home/bob::\n")
    os.chmod(users, 0o600)
    with open(helper_users[0], "w") as f:
        f.write("alice:pop-pw:2001:/home/alice\ncarol:carol-pw\n")
    return [("smtponly", {"type": "passwd-file", "path": str(users),
                          "services": "smtp, submission"}),
            ("ext", ext_auth(helper_users))]


def test_each_service_its_own_chain_and_cache(authd_factory, tmp_path, helper_users):
    sock = str(tmp_path / "dovecot.sock")
    a = authd_factory(chain(tmp_path, helper_users), extra="dovecot-socket = %s\n" % sock,
                      cache={"positive-ttl": "1h", "negative-ttl": "1h"})
    c = a.client()
    # pop3's chain is ext alone: smtponly is never asked
    r = c.auth("alice", "pop-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "ext", r
    assert c.auth("alice", "smtp-pw").cmd == "FAIL"
    assert helper_calls(helper_users) == ["alice", "alice"]
    # smtp's starts with smtponly, whose wrong password ends it: pop3's
    # cached success for this password is not smtp's answer
    assert c.auth("alice", "pop-pw", service="smtp").cmd == "FAIL"
    r = c.auth("alice", "smtp-pw", service="smtp")
    assert r.cmd == "OK" and r.kv["authenticator"] == "smtponly" and r.kv["uid"] == "3001", r
    # ... nor is smtp's success pop3's, both ways, from the cache
    assert c.auth("alice", "smtp-pw").cmd == "FAIL"
    r = c.auth("alice", "pop-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "ext", r
    assert helper_calls(helper_users) == ["alice", "alice"], "pop3's answers were cached"
    assert a.metric("authd_answers_by_source_total", source="cache") == 2

    # bob is unknown to pop3's chain, not to the whole: that is not cached
    # as "no such user" for smtp, which finds him
    assert c.auth("bob", "bob-pw").cmd == "FAIL"
    r = c.auth("bob", "bob-pw", service="smtp")
    assert r.cmd == "OK" and r.kv["authenticator"] == "smtponly", r
    # a user unknown to the whole chain (smtp's is) is cached as such
    assert c.auth("zed", "x", service="smtp").cmd == "FAIL"
    calls = len(helper_calls(helper_users))
    assert c.auth("zed", "y", service="submission").cmd == "FAIL"
    assert c.auth("zed", "z").cmd == "FAIL"
    assert len(helper_calls(helper_users)) == calls

    # Postfix's socket: the service it names picks the chain
    d = Dovecot(sock)
    d.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=%s\n" % b64("\0alice\0smtp-pw"))
    assert d.reply() == ["OK", "1", "user=alice"]
    d.send("AUTH\t2\tPLAIN\tservice=smtp\tresp=%s\n" % b64("\0alice\0pop-pw"))
    assert d.reply() == ["FAIL", "2", "user=alice"]
    d.send("AUTH\t3\tPLAIN\tservice=pop3\tresp=%s\n" % b64("\0alice\0pop-pw"))
    assert d.reply() == ["OK", "3", "user=alice"]

    # one flush finds the user's entries of every chain
    r = authctl("-s", a.socket, "flush", "alice")
    assert r.returncode == 0 and "flushed 4 entries" in r.stdout, r.stdout
    calls = len(helper_calls(helper_users))
    assert c.auth("alice", "pop-pw").cmd == "OK"
    assert len(helper_calls(helper_users)) == calls + 1
    log = a.log_text()
    for pw in ("smtp-pw", "pop-pw", "bob-pw"):
        assert pw not in log


def test_service_no_authenticator_serves(authd_factory, tmp_path, helper_users):
    """Every authenticator names its services: any other service is
    refused without a backend call, counted and logged as such."""
    a = authd_factory([("ext", ext_auth(helper_users, services="smtp"))],
                      cache={"positive-ttl": "1h"})
    c = a.client()
    assert c.auth("carol", "carol-pw", service="smtp").cmd == "OK"
    r = c.auth("carol", "carol-pw")
    assert r.cmd == "FAIL", r
    assert c.auth("carol", "carol-pw", service="imap").cmd == "FAIL"
    assert helper_calls(helper_users) == ["carol"]
    assert a.metric("authd_answers_by_source_total", source="no_authenticator") == 2
    assert a.metric("authd_answers_total", result="fail") == 2
    log = a.log_text()
    assert "auth failed: user=carol service=pop3 rip=- authenticator=none" in log, log
    assert "service imap: no authenticator has it in its services; refused" in log


def test_services_reload(authd_factory, tmp_path, helper_users):
    """A reload that changes `services` changes the chains at once: the
    cache does not answer for a chain a service no longer has."""
    a = authd_factory(chain(tmp_path, helper_users), cache={"positive-ttl": "1h"})
    c = a.client()
    r = c.auth("alice", "smtp-pw", service="smtp")
    assert r.cmd == "OK" and r.kv["authenticator"] == "smtponly", r
    text = open(a.conf).read()
    assert "services = smtp, submission\n" in text
    with open(a.conf, "w") as f:
        f.write(text.replace("services = smtp, submission\n", "services = imap\n"))
    reloads = a.metric("authd_reloads_total", result="ok")
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: a.metric("authd_reloads_total", result="ok") > reloads, 20, "reload")
    # smtp's chain is now ext alone, which knows another password
    assert c.auth("alice", "smtp-pw", service="smtp").cmd == "FAIL"
    assert helper_calls(helper_users) == ["alice"]
    r = c.auth("alice", "smtp-pw", service="imap")
    assert r.cmd == "OK" and r.kv["authenticator"] == "smtponly", r


def test_reload_that_makes_a_chain_whole(authd_factory, tmp_path, helper_users):
    """The other way round: smtp's chain (smtponly, ext) was the whole
    chain; a reload removes smtponly, and pop3's chain (ext) becomes the
    whole one.  smtp's cached success with smtponly's password is not
    pop3's answer."""
    a = authd_factory(chain(tmp_path, helper_users), cache={"positive-ttl": "1h"})
    c = a.client()
    r = c.auth("alice", "smtp-pw", service="smtp")
    assert r.cmd == "OK" and r.kv["authenticator"] == "smtponly", r
    assert c.auth("alice", "smtp-pw").cmd == "FAIL"
    text = open(a.conf).read()
    start = text.index("[authenticator smtponly]")
    with open(a.conf, "w") as f:
        f.write(text[:start] + text[text.index("[authenticator ext]"):])
    reloads = a.metric("authd_reloads_total", result="ok")
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: a.metric("authd_reloads_total", result="ok") > reloads, 20, "reload")
    assert c.auth("alice", "smtp-pw").cmd == "FAIL"
    assert c.auth("alice", "smtp-pw", service="smtp").cmd == "FAIL"
    r = c.auth("alice", "pop-pw", service="smtp")
    assert r.cmd == "OK" and r.kv["authenticator"] == "ext", r
