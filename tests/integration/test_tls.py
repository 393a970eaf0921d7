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
