"""pop3d TLS (issue 8): implicit TLS (POP3S) and STLS, terminated in the
unprivileged front end.  The real authd and pop3d on 127.0.0.1 with real
clients: Python's poplib and ssl, openssl s_client, curl, fetchmail, mpop,
and raw sockets for the protocol corners.  Certificates come from a test CA
made with the openssl command (root -> intermediate -> leaf chains)."""

import base64
import os
import poplib
import re
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from authdlib import wait_until
from conftest import BUILD, PYTHON
from pop3lib import IS_ROOT, TEST_GID, Client, free_port, user_uid
# the pop3d suite's fixtures and messages
from test_pop3d import (BINARY_MSG, CRLF_MSG, PLAIN_MSG, mailroot, wire,  # noqa: F401
                        world)

OPENSSL = "openssl"


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, timeout=60, **kw)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


class Pki:
    """A test CA (root and intermediate) and server certificates signed by
    the intermediate; each server chain file holds leaf + intermediate."""

    def __init__(self, d):
        self.dir = str(d)
        self.ca = self.path("root.pem")
        self._key("root.key")
        run([OPENSSL, "req", "-x509", "-new", "-key", self.path("root.key"), "-subj",
             "/CN=pop3d test root", "-days", "30", "-out", self.ca,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self._key("inter.key")
        run([OPENSSL, "req", "-new", "-key", self.path("inter.key"), "-subj",
             "/CN=pop3d test intermediate", "-out", self.path("inter.csr")])
        self._sign("inter", self.ca, self.path("root.key"), 30,
                   "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                   "keyUsage=critical,keyCertSign,cRLSign\n")
        self.cert, self.key = self.leaf("localhost", ["DNS:localhost", "IP:127.0.0.1", "IP:::1"])

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", self.path(name)])
        os.chmod(self.path(name), 0o600)

    def _sign(self, name, ca, cakey, days, ext):
        with open(self.path(name + ".ext"), "w") as f:
            f.write(ext)
        run([OPENSSL, "x509", "-req", "-in", self.path(name + ".csr"), "-CA", ca,
             "-CAkey", cakey, "-CAcreateserial", "-days", str(days),
             "-extfile", self.path(name + ".ext"), "-out", self.path(name + ".pem")])

    def leaf(self, name, sans, days=20):
        """A key and a chain file (leaf + intermediate) for name."""
        self._key(name + ".key")
        run([OPENSSL, "req", "-new", "-key", self.path(name + ".key"), "-subj", "/CN=" + name,
             "-out", self.path(name + ".csr")])
        self._sign(name, self.path("inter.pem"), self.path("inter.key"), days,
                   "subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % ",".join(sans))
        chain = self.path(name + ".chain.pem")
        with open(chain, "wb") as out:
            for part in (name + ".pem", "inter.pem"):
                with open(self.path(part), "rb") as f:
                    out.write(f.read())
        return chain, self.path(name + ".key")

    def context(self):
        """A client context that trusts only the test root."""
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_keys(pki, **extra):
    """[pop3d] keys for STLS on the plain port and POP3S on a second one."""
    k = {"listen-tls": "127.0.0.1:%d" % free_port(),
         "starttls": "yes",
         "tls-cert-file": pki.cert,
         "tls-key-file": pki.key}
    k.update({key.replace("_", "-"): v for key, v in extra.items()})
    return k


def tls_port(p):
    return int(re.search(r"^listen-tls = 127\.0\.0\.1:(\d+)$", open(p.conf).read(),
                         re.M).group(1))


def pop3s(p, pki, timeout=15):
    return poplib.POP3_SSL("127.0.0.1", tls_port(p), context=pki.context(), timeout=timeout)


def capa_list(c):
    """CAPA over a raw Client: the capability lines."""
    assert c.cmd("CAPA").startswith("+OK")
    return c.multiline().decode().split("\r\n")[:-1]


# ---- real clients ------------------------------------------------------------------


def test_pop3s_poplib_full_session(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    c = pop3s(p, pki)
    assert c.getwelcome() == b"+OK POP3 server ready"
    caps = c.capa()
    assert "STLS" not in caps           # already TLS
    assert "USER" in caps and caps["SASL"] == ["PLAIN"]
    c.user("alice")
    assert c.pass_("alice-pw").startswith(b"+OK Logged in")
    sizes = [len(wire(m)) for m in (PLAIN_MSG, CRLF_MSG, BINARY_MSG)]
    assert c.stat() == (3, sum(sizes))
    for i, m in enumerate((PLAIN_MSG, CRLF_MSG, BINARY_MSG), 1):
        resp, lines, octets = c.retr(i)
        assert b"\r\n".join(lines) + b"\r\n" == wire(m)
    c.dele(2)
    assert c.quit().startswith(b"+OK")
    log = p.log_text()
    m = re.search(r"login: user=alice rip=127\.0\.0\.1 method=USER secured=yes "
                  r"tls=(TLSv1\.[23])/(\S+) pid=(\d+)", log)
    assert m, log
    assert m.group(1) == "TLSv1.3"
    wait_until(lambda: "logout: user=alice" in p.log_text(), 10, "logout line")
    assert re.search(r"logout: user=alice rip=127\.0\.0\.1 reason=QUIT .* del=1/\d+ "
                     r"size=3/\d+ secured=yes tls=TLSv1\.3/", p.log_text())
    assert len(os.listdir(os.path.join(p.maildirs["alice"], "cur"))) == 2


def test_stls_poplib_and_capabilities(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    caps = c.capa()
    assert "STLS" in caps and "USER" in caps
    c.stls(context=pki.context())
    caps = c.capa()
    assert "STLS" not in caps and "USER" in caps and "SASL" in caps
    # AUTH PLAIN over the upgraded connection
    assert c._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0bob-pw").decode()) \
        .startswith(b"+OK Logged in")
    assert c.stat() == (0, 0)
    c.quit()
    assert re.search(r"login: user=bob rip=127\.0\.0\.1 method=PLAIN secured=yes "
                     r"tls=TLSv1\.3/\S+ pid=", p.log_text())
    # a second STLS is refused, and a server without starttls offers none
    c = Client(p.port)
    assert c.cmd("STLS") == "+OK Begin TLS negotiation"
    c.starttls(pki.context())
    assert c.cmd("STLS") == "-ERR Already using TLS"
    assert c.cmd("QUIT") == "+OK Bye"
    assert c.closed()
    c = Client(tls_port(p), tls=pki.context())
    assert c.cmd("STLS") == "-ERR Already using TLS"
    c.close()


def test_stls_not_offered_without_starttls(world, pki):
    p = world(pop3d_keys=tls_keys(pki, starttls="no"))
    c = Client(p.port)
    assert "STLS" not in capa_list(c)
    assert c.cmd("STLS") == "-ERR STLS is not available"
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")
    assert "secured=no pid=" in p.log_text()
    # the POP3S port works all the same
    c = pop3s(p, pki)
    c.user("bob")
    c.pass_("bob-pw")
    c.quit()


def s_client(args, stdin, timeout=30):
    r = subprocess.run([OPENSSL, "s_client", "-ign_eof", "-crlf", "-verify_return_error"] + args,
                       input=stdin, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode("latin-1"), r.stderr.decode("latin-1")


def test_openssl_s_client_starttls_and_pop3s(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    session = b"USER alice\nPASS alice-pw\nSTAT\nRETR 2\nQUIT\n"
    for args in (["-starttls", "pop3", "-connect", "127.0.0.1:%d" % p.port],
                 ["-connect", "127.0.0.1:%d" % tls_port(p)]):
        rc, out, err = s_client(args + ["-CAfile", pki.ca, "-verify_hostname", "localhost"],
                                session)
        assert rc == 0, (args, out, err)
        assert "Verify return code: 0 (ok)" in out, out
        # the chain: leaf and intermediate sent, root from the CA file
        assert "1 s:CN = pop3d test intermediate" in out, out
        assert "+OK Logged in, 3 messages" in out
        assert "\n+OK 3 %d" % sum(len(wire(m)) for m in (PLAIN_MSG, CRLF_MSG, BINARY_MSG)) \
            in out.replace("\r", "")
        assert wire(CRLF_MSG).decode() in out
        assert "+OK Logging out" in out
        assert "New, TLSv1.3, Cipher is TLS_" in out
    # TLS 1.2 when the client asks for it: an ECDHE suite, never plain DH
    rc, out, err = s_client(["-connect", "127.0.0.1:%d" % tls_port(p), "-tls1_2",
                             "-CAfile", pki.ca], b"QUIT\n")
    assert rc == 0, out + err
    assert re.search(r"New, TLSv1\.2, Cipher is ECDHE-ECDSA-", out), out
    # TLS 1.1 is refused
    rc, out, err = s_client(["-connect", "127.0.0.1:%d" % tls_port(p), "-tls1_1",
                             "-CAfile", pki.ca], b"QUIT\n")
    assert rc != 0


def test_curl_pop3s_and_ssl_reqd(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    base = ["curl", "-sS", "--max-time", "20", "--cacert", pki.ca, "-u", "alice:alice-pw"]
    r = subprocess.run(base + ["pop3s://127.0.0.1:%d/1" % tls_port(p)], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == wire(PLAIN_MSG)
    r = subprocess.run(base + ["--ssl-reqd", "pop3://127.0.0.1:%d/3" % p.port],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == wire(BINARY_MSG)
    # and SASL PLAIN over STLS
    r = subprocess.run(base + ["--ssl-reqd", "--login-options", "AUTH=PLAIN",
                               "pop3://127.0.0.1:%d/" % p.port], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"1 %d\r\n" % len(wire(PLAIN_MSG)))
    assert len(re.findall(r"login: user=alice .*secured=yes tls=TLSv1\.3/", p.log_text())) == 3


def test_curl_ssl_reqd_without_stls_sends_nothing(world, pki):
    q = world(pop3d_keys=tls_keys(pki, starttls="no"))
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", pki.ca, "-u",
                        "alice:alice-pw", "--ssl-reqd", "pop3://127.0.0.1:%d/" % q.port],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert "login: user=alice" not in q.log_text()


def test_fetchmail_pop3s_and_mpop_stls(world, pki, tmp_path):
    msgs = [("new/1000000001.T%d.host" % i,
             b"From: t%d@example.org\nSubject: m%d\n\nline\n.\n..x\n" % (i, i))
            for i in range(3)]
    p = world(pop3d_keys=tls_keys(pki), users={"alice": msgs, "bob": msgs})
    mbox = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    # fetchmail checks names only, not IP addresses: sslcommonname
    rc.write_text("poll 127.0.0.1 port %d proto pop3 auth password timeout 20\n"
                  "  user alice password alice-pw is root here\n"
                  "  ssl sslproto TLS1.2+ sslcertck sslcertfile %s sslcommonname localhost\n"
                  "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (tls_port(p), pki.ca, mbox))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--pidfile", str(tmp_path / "fetchmail.pid"),
                        "--nosyslog", "-N", "-v"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = mbox.read_bytes().replace(b"\r\n", b"\n")
    for _, m in msgs:
        assert m.split(b"\n\n", 1)[1] in got
    assert os.listdir(os.path.join(p.maildirs["alice"], "new")) == []
    # mpop: STLS on the plain port, certificate checked against the test CA
    out = tmp_path / "mpop-mbox"
    out.write_bytes(b"")
    mrc = tmp_path / "mpoprc"
    mrc.write_text("account default\nhost 127.0.0.1\nport %d\nuser bob\n"
                   "password bob-pw\nauth user\ntls on\ntls_starttls on\n"
                   "tls_trust_file %s\ntimeout 20\n"
                   "delivery mbox %s\nuidls_file %s\nkeep off\n"
                   % (p.port, pki.ca, out, tmp_path / "uidls"))
    mrc.chmod(0o600)
    r = subprocess.run(["mpop", "-C", str(mrc), "-q"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for _, m in msgs:
        assert m.split(b"\n\n", 1)[1] in out.read_bytes()
    assert os.listdir(os.path.join(p.maildirs["bob"], "new")) == []
    log = p.log_text()
    assert re.search(r"login: user=alice .*secured=yes tls=TLSv1\.[23]/", log)
    assert re.search(r"login: user=bob .*secured=yes tls=TLSv1\.[23]/", log)


# ---- the protocol corners --------------------------------------------------------------


def test_stls_injection_is_discarded(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    # Commands pipelined after STLS in the same packet never run: here a
    # USER that, if kept, would make the PASS after the handshake succeed.
    c = Client(p.port)
    c.send("STLS\r\nUSER alice\r\nCAPA\r\n")
    assert c.line() == "+OK Begin TLS negotiation"
    c.starttls(pki.context())
    assert c.cmd("PASS alice-pw") == "-ERR USER first"
    assert c.cmd("NOOP") == "+OK"
    c.close()
    wait_until(lambda: "dropped 18 bytes sent in plain text after STLS" in p.log_text(), 10,
               "the log line about dropped bytes")
    # what the client said before STLS is forgotten too
    c = Client(p.port)
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("STLS") == "+OK Begin TLS negotiation"
    c.starttls(pki.context())
    assert c.cmd("PASS alice-pw") == "-ERR USER first"
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")
    c.close()
    # plain bytes that had not arrived yet when STLS was read go to the
    # TLS engine, which fails: the injected command is still not run
    c = Client(p.port)
    c.send("STLS\r\n")
    assert c.line() == "+OK Begin TLS negotiation"
    c.send("USER alice\r\nPASS alice-pw\r\n")
    assert c.closed(10)
    assert c.buf == b"" or not c.buf.startswith(b"+OK"), c.buf
    assert "login: user=alice" in p.log_text()  # only the good one above
    assert len(re.findall(r"login: user=alice", p.log_text())) == 1


def test_pipelining_over_tls_across_the_handoff(world, pki):
    p = world(pop3d_keys=tls_keys(pki))
    c = Client(tls_port(p), tls=pki.context())
    c.send("CAPA\r\nUSER alice\r\nPASS alice-pw\r\nSTAT\r\nUIDL 1\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
    assert c.line().startswith("+OK")
    while c.line() != ".":
        pass
    assert c.line() == "+OK"
    assert c.line().startswith("+OK Logged in, 3 messages")
    assert c.line().startswith("+OK 3 ")
    assert c.line() == "+OK 1 1000000001.M1.host"
    assert c.line().startswith("+OK %d octets" % len(wire(PLAIN_MSG)))
    assert c.multiline() == wire(PLAIN_MSG)
    assert c.line() == "+OK"
    assert c.line() == "+OK Logging out"
    assert c.closed()


def test_require_tls(world, pki):
    p = world(pop3d_keys=tls_keys(pki, require_tls="yes", max_bad_commands="5"))
    c = Client(p.port)
    caps = capa_list(c)
    assert "STLS" in caps and "USER" not in caps and "SASL PLAIN" not in caps
    for cmd in ("USER alice", "PASS alice-pw", "AUTH PLAIN " +
                base64.b64encode(b"\0alice\0alice-pw").decode(), "AUTH"):
        assert c.cmd(cmd) == "-ERR [AUTH] TLS is required to log in: use STLS first", cmd
    assert c.cmd("STLS") == "+OK Begin TLS negotiation"
    c.starttls(pki.context())
    caps = capa_list(c)
    assert "STLS" not in caps and "USER" in caps and "SASL PLAIN" in caps
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")
    # POP3S needs nothing more
    c = pop3s(p, pki)
    c.user("bob")
    c.pass_("bob-pw")
    c.quit()
    # curl without TLS gets nowhere
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "alice:alice-pw",
                        "pop3://127.0.0.1:%d/" % p.port], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert len(re.findall(r"login: user=\S+ .*secured=yes", p.log_text())) == 2
    assert "secured=no" not in p.log_text()


def test_require_tls_disconnect(world, pki):
    p = world(pop3d_keys=tls_keys(pki, require_tls="yes", require_tls_disconnect="yes",
                                  starttls="no"))
    c = Client(p.port)
    assert "STLS" not in capa_list(c)
    assert c.cmd("USER alice") == "-ERR [AUTH] TLS is required to log in; closing"
    assert c.closed()
    c = Client(p.port)
    assert c.cmd("AUTH PLAIN") == "-ERR [AUTH] TLS is required to log in; closing"
    assert c.closed()
    assert "login: " not in p.log_text()


def test_require_tls_exempt_networks(world, pki):
    # loopback exempt: plain logins work and are advertised, STLS still on offer
    q = world(pop3d_keys=tls_keys(pki, require_tls="yes", require_tls_exempt="10.0.0.0/8, "
                                  "127.0.0.0/8"))
    c = Client(q.port)
    caps = capa_list(c)
    assert "USER" in caps and "STLS" in caps
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")
    assert "login: user=alice rip=127.0.0.1 method=USER secured=no pid=" in q.log_text()


def test_require_tls_exempt_other_network(world, pki):
    # a list that does not cover 127.0.0.1 does not exempt it
    r = world(pop3d_keys=tls_keys(pki, require_tls="yes", require_tls_exempt="::1/128"))
    c = Client(r.port)
    assert c.cmd("USER alice").startswith("-ERR [AUTH] TLS is required")
    c.close()


SECURED_HELPER = r'''#!/usr/bin/python3
# An external authenticator that wants TLS: OK only with secured=yes.
import sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
seen, homes, uid = sys.argv[1], sys.argv[2], sys.argv[3]


def request():
    recs, cur = [], b""
    while True:
        c = inp.read(1)
        if not c:
            return None
        if c == b"\0":
            if cur == b"":
                return dict(r.decode().split("=", 1) for r in recs)
            recs.append(cur)
            cur = b""
        else:
            cur += c


while True:
    r = request()
    if r is None:
        break
    with open(seen, "a") as f:
        f.write("%s secured=%s\n" % (r["user"], r.get("secured")))
    home = dict(l.split(":", 1) for l in open(homes).read().split())
    if r.get("secured") == "yes" and r["password"] == r["user"] + "-pw":
        out.write(b"result=OK\0uid=%s\0home=%s\0\0" % (uid.encode(), home[r["user"]].encode()))
    else:
        out.write(b"result=FAIL\0\0")
    out.flush()
'''


def test_authd_gets_secured_and_can_require_it(world, pki, tmp_path):
    helper = tmp_path / "secured_helper.py"
    helper.write_text(SECURED_HELPER)
    seen, homes = tmp_path / "seen", tmp_path / "homes"
    p = world(pop3d_keys=tls_keys(pki), start=False,
              auths=[("tlsonly", {"type": "external", "workers": "1",
                                  "default-gid": str(TEST_GID if IS_ROOT else os.getgid()),
                                  "program": "%s %s %s %s %d" % (PYTHON, helper, seen, homes,
                                                                 user_uid())})])
    homes.write_text("".join("%s:%s\n" % (u, os.path.dirname(md))
                             for u, md in p.maildirs.items()))
    p.start()
    c = Client(p.port)
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw") == "-ERR [AUTH] Authentication failed"
    c.close()
    c = Client(p.port)
    c.cmd("STLS")
    c.starttls(pki.context())
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    c.cmd("QUIT")
    c = Client(tls_port(p), tls=pki.context())
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0bob-pw").decode()) \
        .startswith("+OK Logged in")
    c.cmd("QUIT")
    assert seen.read_text().splitlines() == ["alice secured=no", "alice secured=yes",
                                             "bob secured=yes"]


def test_sni_picks_the_certificate(world, pki):
    mail_cert, mail_key = pki.leaf("mail.example.test", ["DNS:mail.example.test",
                                                         "DNS:*.pop.example.test"])
    p = world(pop3d_keys=tls_keys(pki, tls_cert_file="%s, %s" % (pki.cert, mail_cert),
                                  tls_key_file="%s,%s" % (pki.key, mail_key)))
    ctx = pki.context()

    def served_cn(name, check=True):
        cx = ctx if check else ssl.create_default_context(cafile=pki.ca)
        if not check:
            cx.check_hostname = False
        c = Client(tls_port(p), tls=cx, server_hostname=name)
        assert c.greeting.startswith("+OK")
        cn = dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"]
        c.close()
        return cn
    assert served_cn("mail.example.test") == "mail.example.test"
    assert served_cn("x.pop.example.test") == "mail.example.test"
    assert served_cn("localhost") == "localhost"
    assert served_cn("unknown.example.test", check=False) == "localhost"
    # and through STLS
    c = Client(p.port)
    c.cmd("STLS")
    c.starttls(ctx, server_hostname="mail.example.test")
    c.cmd("USER carol")
    assert c.cmd("PASS carol-pw").startswith("+OK Logged in")
    c.cmd("QUIT")


def test_session_resumes_on_another_front_end(world, pki):
    p = world(pop3d_keys=tls_keys(pki, login_processes="2"))
    ctx = pki.context()
    first = Client(tls_port(p), tls=ctx)
    session = first.sock.session
    assert session is not None and session.has_ticket
    # first is held open, so the master's least-busy choice sends the next
    # connection to the other front end: the ticket is valid there too
    sock = socket.create_connection(("127.0.0.1", tls_port(p)), timeout=10)
    second = ctx.wrap_socket(sock, server_hostname="localhost", session=session)
    assert second.session_reused
    assert second.recv(100).startswith(b"+OK")
    second.close()
    first.close()
    pids = re.findall(r"pop3d\[(\d+)\]: debug: TLS: rip=127\.0\.0\.1 (\S+)( resumed)?$",
                      p.log_text(), re.M)
    assert len(pids) == 2 and pids[0][2] == "" and pids[1][2] == " resumed", pids
    assert pids[0][0] != pids[1][0]


def test_tickets_off(world, pki):
    p = world(pop3d_keys=tls_keys(pki, tls_session_tickets="no", tls_min_version="TLSv1.3"))
    ctx = pki.context()
    c = Client(tls_port(p), tls=ctx)
    assert c.sock.version() == "TLSv1.3"
    c.close()
    rc, out, err = s_client(["-connect", "127.0.0.1:%d" % tls_port(p), "-tls1_2",
                             "-CAfile", pki.ca], b"QUIT\n")
    assert rc != 0      # below tls-min-version


# ---- start-up checks -----------------------------------------------------------------


def check(p):
    return subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", p.conf],
                          capture_output=True, text=True, timeout=20)


def test_startup_refuses_bad_keys_and_certificates(world, pki, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    other_cert, other_key = pki.leaf("other.example.test", ["DNS:other.example.test"])
    loose = tmp_path / "loose.key"
    loose.write_bytes(open(pki.key, "rb").read())
    loose.chmod(0o644)
    grp = tmp_path / "group.key"
    grp.write_bytes(open(pki.key, "rb").read())
    grp.chmod(0o640)
    enc = tmp_path / "enc.key"
    run([OPENSSL, "pkey", "-in", pki.key, "-aes128", "-passout", "pass:x", "-out", str(enc)])
    enc.chmod(0o600)
    cases = [
        ({"tls_key_file": str(loose)}, "tls-key-file %s is accessible by group or others "
         "(mode 0644)" % loose),
        ({"tls_key_file": str(grp)}, "tls-key-file %s is accessible by group or others "
         "(mode 0640)" % grp),
        ({"tls_key_file": other_key}, "tls-key-file %s does not belong to the certificate"
         % other_key),
        ({"tls_cert_file": str(bad)}, "tls-cert-file %s: no usable PEM certificate chain"
         % bad),
        ({"tls_cert_file": str(tmp_path / "missing.pem")}, "cannot open: No such file"),
        ({"tls_key_file": str(enc)}, "tls-key-file %s: no usable private key" % enc),
        ({"tls_key_file": ""}, "tls-key-file: expected one key file per tls-cert-file"),
        ({"tls_ciphers": "NOPE-NOTHING"}, "tls-ciphers: no usable cipher"),
        ({"tls_groups": "ffdhe13"}, "tls-groups: cannot use"),
        ({"tls_min_version": "TLSv1.1"}, "tls-min-version: expected TLSv1.2 or TLSv1.3"),
        ({"require_tls_exempt": "127.0.0.1/8"}, "require-tls-exempt"),
        ({"listen_tls": "localhost:995"}, "listen-tls: bad address"),
    ]
    p = world(pop3d_keys=tls_keys(pki), start=False)
    text = open(p.conf).read()
    assert check(p).returncode == 0, check(p).stderr
    for keys, msg in cases:
        t = text
        for k, v in keys.items():
            k = k.replace("_", "-")
            if re.search(r"^%s = .*$" % k, t, re.M):
                t = re.sub(r"^%s = .*$" % k, lambda m: "%s = %s" % (k, v), t, flags=re.M)
            else:
                t = t.replace("[pop3d]\n", "[pop3d]\n%s = %s\n" % (k, v), 1)
        open(p.conf, "w").write(t)
        r = check(p)
        assert r.returncode != 0 and msg in r.stderr, (keys, r.stderr)
    # and a real start with a key file of mode 0644 stops with that message
    open(p.conf, "w").write(text.replace(pki.key, str(loose)))
    p.logf = open(p.log, "ab")
    proc = subprocess.run([os.path.join(BUILD, "pop3d"), "-f", "-c", p.conf],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "(mode 0644)" in proc.stderr and "TLS certificates or keys unusable" in proc.stderr
    # require-tls with no TLS at all cannot be satisfied
    open(p.conf, "w").write(re.sub(r"^(listen-tls|starttls) = .*\n", "", text, flags=re.M)
                            .replace("[pop3d]\n", "[pop3d]\nrequire-tls = yes\n", 1))
    r = check(p)
    assert r.returncode != 0 and "require-tls = yes needs starttls" in r.stderr, r.stderr


def test_startup_warns_about_expiring_certificate(world, pki):
    soon_cert, soon_key = pki.leaf("soon.example.test", ["IP:127.0.0.1"], days=5)
    p = world(pop3d_keys=tls_keys(pki, tls_cert_file=soon_cert, tls_key_file=soon_key))
    assert re.search(r"tls-cert-file %s: certificate expires in [45] days" % re.escape(soon_cert),
                     p.log_text()), p.log_text()
    c = pop3s(p, pki)       # and it serves
    c.quit()


# ---- bad input and faults -----------------------------------------------------------------

# The first bytes of a TLS 1.2+ ClientHello record: handshake, version, length.
HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def timed_pop3s_login(p, pki, user="bob"):
    t = time.monotonic()
    c = pop3s(p, pki)
    c.user(user)
    c.pass_(user + "-pw")
    c.stat()
    c.quit()
    return time.monotonic() - t


def test_handshake_faults_do_not_block_others(world, pki):
    # one front end: anything that blocked its loop would block everyone
    p = world(pop3d_keys=tls_keys(pki, login_processes="1", preauth_timeout="3s"))
    port = tls_port(p)
    t0 = time.monotonic()
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    partial = socket.create_connection(("127.0.0.1", port), timeout=10)
    partial.sendall(HELLO_START)
    # garbage instead of a ClientHello, a plain POP3 client on the POP3S
    # port, and a client that drops half-way through its ClientHello
    garbage = socket.create_connection(("127.0.0.1", port), timeout=10)
    garbage.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(3000))
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)
    plain.sendall(b"CAPA\r\nUSER alice\r\n")
    dropper = socket.create_connection(("127.0.0.1", port), timeout=10)
    dropper.sendall(HELLO_START)
    dropper.close()
    # a TLS client on the plain port: its ClientHello is garbage to POP3
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    with pytest.raises((ssl.SSLError, OSError)):
        pki.context().wrap_socket(raw, server_hostname="localhost")
    raw.close()
    # meanwhile a real client logs in at once, over POP3S and over STLS
    assert timed_pop3s_login(p, pki) < 1.5
    t = time.monotonic()
    c = poplib.POP3("127.0.0.1", p.port, timeout=10)
    c.stls(context=pki.context())
    c.user("carol")
    c.pass_("carol-pw")
    c.quit()
    assert time.monotonic() - t < 1.5
    # the broken handshakes were closed right away ...
    for s in (garbage, plain):
        s.settimeout(5)
        data = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        except ConnectionResetError:
            pass
        assert not data.startswith(b"+OK"), data   # at most a TLS alert
    # ... and the stalled ones when preauth-timeout (3 s) ran out
    for s in stalled + [partial]:
        s.settimeout(10)
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass
    assert 2.5 < time.monotonic() - t0 < 8
    log = p.log_text()
    assert log.count("TLS handshake timed out: rip=127.0.0.1") == 5, log
    assert "TLS handshake failed: rip=127.0.0.1: " in log
    for s in stalled + [partial, garbage, plain]:
        s.close()
    wait_until(lambda: p.metric("pop3d_connections") == 0, 10, "connections released")
    assert p.proc.poll() is None


def test_renegotiation_is_refused(world, pki):
    p = world(pop3d_keys=tls_keys(pki, login_processes="1"))
    # s_client's interactive "R" asks for a TLS 1.2 renegotiation
    proc = subprocess.Popen([OPENSSL, "s_client", "-tls1_2", "-connect",
                             "127.0.0.1:%d" % tls_port(p), "-CAfile", pki.ca, "-crlf"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out = b""
        deadline = time.monotonic() + 15

        def read_until(marker):
            nonlocal out
            while marker not in out:
                left = deadline - time.monotonic()
                assert left > 0, out
                if select.select([proc.stdout], [], [], left)[0]:
                    d = os.read(proc.stdout.fileno(), 65536)
                    if not d:
                        return False
                    out += d
            return True
        assert read_until(b"+OK POP3 server ready")
        proc.stdin.write(b"NOOP\n")
        proc.stdin.flush()
        assert read_until(b"+OK\r\n")
        proc.stdin.write(b"R\n")
        proc.stdin.flush()
        read_until(b"never printed")       # until s_client gives up
        assert b"RENEGOTIATING" in out and b"no renegotiation" in out, out
    finally:
        proc.kill()
        proc.wait()
    # the front end goes on serving
    assert timed_pop3s_login(p, pki) < 1.5


def big_message():
    return b"Subject: big\n\n" + (b"0123456789" * 7 + b"\n.dot line\n") * 100000


def test_client_vanishes_during_retr_over_tls(world, pki):
    big = big_message()
    p = world(pop3d_keys=tls_keys(pki, login_processes="1"),
              users={"alice": [("new/1.big", big), ("new/2.small", b"S: s\n\ns\n")]})
    c = Client(tls_port(p), tls=pki.context())
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK")
    c.cmd("DELE 2")
    c.send("RETR 1\r\n")
    assert c.line().startswith("+OK")
    c.sock.recv(1000)
    c.sock.close()      # mid-transfer, no close_notify
    wait_until(lambda: "reason=disconnected" in p.log_text() or
               "reason=io-error" in p.log_text(), 10, "session end")
    wait_until(lambda: p.metric("pop3d_connections") == 0, 10, "connection released")
    # nothing deleted, and a whole RETR streams intact through the relay
    d = pop3s(p, pki)
    d.user("alice")
    d.pass_("alice-pw")
    assert d.stat()[0] == 2
    resp, lines, octets = d.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == wire(big)
    d.quit()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def tcp_sockets(pid):
    """How many TCP sockets (client connections) pid holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                inodes.add(line.split()[9])
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            n += 1
    return n


def test_tls_client_that_stops_reading_is_dropped(world, pki):
    p = world(pop3d_keys=tls_keys(pki, login_processes="1", session_timeout="1s"),
              users={"alice": [("new/1.big", big_message())], "carol": []})
    fe = [int(x) for x in re.findall(r"front end (\d+) started", p.log_text())][0]
    # (the start-up probe's connection must be gone first)
    wait_until(lambda: tcp_sockets(fe) == 0, 10, "probe connection closed")
    idle_fds = fd_count(fe)
    c = Client(tls_port(p), tls=pki.context())
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK")
    c.send("RETR 1\r\n")        # and never read the 8 MB
    t0 = time.monotonic()
    # the relay gives up on the client, or the session on writing (both
    # after session-timeout), and then the other one follows
    wait_until(lambda: "logout: user=alice" in p.log_text(), 10, "session end")
    assert re.search(r"logout: user=alice .*reason=(autologout|disconnected) retr=0/0",
                     p.log_text())
    wait_until(lambda: tcp_sockets(fe) == 0 and fd_count(fe) == idle_fds, 10, "relay closed")
    assert time.monotonic() - t0 < 6
    assert p.metric("pop3d_connections") == 0
    # and the front end is fine
    assert timed_pop3s_login(p, pki, "carol") < 1.5
    c.close()


# ---- who holds the key ------------------------------------------------------------------


def ec_private_scalar(key_path):
    text = run([OPENSSL, "pkey", "-in", key_path, "-text", "-noout"]).stdout.decode()
    hexpart = text.split("priv:", 1)[1].split("pub:", 1)[0]
    return bytes.fromhex("".join(hexpart.split()).replace(":", ""))[-32:]


def memory_holds(pid, needles):
    """True if one of needles occurs in pid's readable memory."""
    longest = max(len(n) for n in needles)
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read().splitlines()
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else ""
            if "r" not in fields[1] or name in ("[vvar]", "[vsyscall]") or \
                    end - start > 256 << 20:
                continue
            pos, tail = start, b""
            while pos < end:
                try:
                    mem.seek(pos)
                    chunk = mem.read(min(1 << 20, end - pos))
                except OSError:
                    break
                if not chunk:
                    break
                data = tail + chunk
                if any(n in data for n in needles):
                    return True
                tail = data[-longest:]
                pos += len(chunk)
    return False


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="reading another user's memory needs root")
def test_session_holds_no_key_material(world, pki):
    p = world(pop3d_keys=tls_keys(pki, login_processes="1"))
    fe = int(re.findall(r"front end (\d+) started", p.log_text())[0])
    c = Client(tls_port(p), tls=pki.context())
    c.cmd("USER alice")
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
    assert c.cmd("RETR 1").startswith("+OK")   # the relay has been busy
    c.multiline()
    session = int(re.search(r"login: user=alice .* pid=(\d+)", p.log_text()).group(1))
    key = os.path.realpath(pki.key)
    scalar = ec_private_scalar(key)
    pem = open(key).read().splitlines()
    needles = [scalar, scalar[::-1]] + [l.encode() for l in pem[1:-1] if len(l) >= 40]
    for pid in (session, p.proc.pid):
        with open("/proc/%d/maps" % pid) as f:
            assert key not in f.read()
        fds = []
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                fds.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
        assert key not in fds and pki.cert not in fds, fds
        assert not memory_holds(pid, needles), "key material in pid %d" % pid
    # the same search finds the key where it is expected: in the front end
    assert memory_holds(fe, [scalar, scalar[::-1]])
    assert c.cmd("QUIT") == "+OK Logging out"
