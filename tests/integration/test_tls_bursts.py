"""pop3d TLS input in bursts (issue 13, item 4): a client that sends many
commands in one write before it logs in, over POP3S and over STLS.

The real authd and pop3d on 127.0.0.1, one server for the whole module.
The client (BioTls) runs TLS through memory BIOs, so that each burst,
however many TLS records it takes, reaches the kernel in ONE write: the
front end then finds a full 16 KiB record and the next ones waiting
together, which is what made libevent's OpenSSL filter call our read
callback inside itself (login.c, DESIGN: TLS input) and corrupt a line of
every burst of 17 to 19 KiB.  ssl.SSLSocket writes record by record and
hits that only by chance.

What is checked: for every burst size from 1 to 40 KiB (and 16383, 16384,
16385 bytes exactly) every NOOP gets "+OK", in order, one each.  A pre-auth
client may pipeline any number of commands up to login-max-commands (raised
here above the 6,800 NOOPs of 40 KiB): the front end does not refuse lines
for arriving together; it only stops reading while its replies go unread
(back-pressure, docs/pop3d.md), so nothing is ever answered with an error
here.  A burst that ends in USER/PASS logs in, and a burst followed by
close_notify in the same write costs the server nothing."""

import os
import re
import socket
import ssl
import time

import pytest

from conftest import Authd
from pop3lib import MailRoot, Pop3d, passwd_line
from test_tls import Pki, tls_keys, tls_port

KIB = 1024
SIZES = sorted(set([k * KIB for k in range(1, 41)] + [16383, 16384, 16385]))


class BioTls:
    """A TLS client over a connected socket through memory BIOs: send()
    encrypts all its data first and hands the records to the kernel in
    one sendall.  line() reads one CRLF-ended line; every wait is bounded."""

    def __init__(self, sock, ctx, timeout=10, server_hostname="localhost", session=None):
        self.sock = sock
        self.timeout = timeout
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False,
                                server_hostname=server_hostname, session=session)
        self.buf = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill(deadline)
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("TLS: nothing more from the server; have %r" % self.buf[-200:])
        self.sock.settimeout(left)
        d = self.sock.recv(65536)
        if not d:
            self.inc.write_eof()
            raise EOFError("connection closed; have %r" % self.buf[-200:])
        self.inc.write(d)

    def send(self, data, close_notify=False):
        """Encrypts data (and with close_notify, the alert after it) and
        writes it all to the socket at once."""
        view = memoryview(data)
        while view:
            view = view[self.obj.write(view):]
        if close_notify:
            try:
                self.obj.unwrap()
            except ssl.SSLWantReadError:
                pass        # the server's close_notify has not come: fine
        self._flush()

    def line(self):
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            try:
                self.buf += self.obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            self._flush()
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("latin-1")

    def lines(self, n):
        return [self.line() for _ in range(n)]

    def close(self):
        self.sock.close()


def noop_burst(size):
    """size bytes of NOOP lines: "NOOP\\r\\n" each, the last padded with
    blanks (NOOP takes no argument and ignores them).  Returns (bytes,
    number of lines)."""
    n, rest = divmod(size, 6)
    if n == 0:
        return b"NOOP" + b" " * (size - 4) + b"\r\n", 1
    data = b"NOOP\r\n" * (n - 1) + b"NOOP" + b" " * rest + b"\r\n"
    assert len(data) == size
    return data, n


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """authd with one user, alice, and pop3d with POP3S and STLS; shared
    by every test of the module (and checked at the end: no sanitizer
    report, no front end that died)."""
    d = tmp_path_factory.mktemp("bursts")
    pki = Pki(tmp_path_factory.mktemp("bursts-pki"))
    mailroot = MailRoot()
    md = mailroot.maildir("alice", [("new/1.M1.host", b"Subject: x\n\nhello\n")])
    users = os.path.join(str(d), "users")
    with open(users, "w") as f:
        f.write(passwd_line("alice", "alice-pw", os.path.dirname(md)))
    authd = Authd(d, [("pw", {"type": "passwd-file", "path": users})]).start()
    keys = tls_keys(pki)
    keys["login-max-commands"] = "100000"
    pop3d = Pop3d(authd, d, keys).start()
    pop3d.pki = pki
    try:
        yield pop3d
        log = pop3d.log_text()
        assert not re.search(r"front end \d+ ended", log), log
    finally:
        pop3d.stop()
        authd.stop()
        mailroot.cleanup()


def connect(server, mode):
    """A TLS connection past its greeting: POP3S, or STLS on the plain port."""
    ctx = server.pki.context()
    if mode == "pop3s":
        c = BioTls(socket.create_connection(("127.0.0.1", tls_port(server)), timeout=10), ctx)
        assert c.line().startswith("+OK")
        return c
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    f = s.makefile("rb", buffering=0)
    assert f.readline().startswith(b"+OK")
    s.sendall(b"STLS\r\n")
    assert f.readline() == b"+OK Begin TLS negotiation\r\n"
    return BioTls(s, ctx)


@pytest.mark.parametrize("mode", ["pop3s", "stls"])
def test_noop_bursts_every_size(server, mode):
    """Every size from 1 to 40 KiB: all replies +OK, one per line, none
    lost, no "NUL byte" (the old code: sizes 17-19 KiB lost a line and
    answered the NUL-wiped copy of it)."""
    failures = []
    for size in SIZES:
        data, n = noop_burst(size)
        c = connect(server, mode)
        try:
            c.send(data)
            replies = c.lines(n)
            bad = [(i, r) for i, r in enumerate(replies) if r != "+OK"]
            if bad:
                failures.append((size, n, bad[:3]))
            # nothing more than one reply per line: the next is QUIT's
            c.send(b"QUIT\r\n")
            assert c.line() == "+OK Bye", size
        finally:
            c.close()
    assert not failures, "bursts answered wrongly (size, lines, first bad replies): %r" % (
        failures,)


@pytest.mark.parametrize("mode", ["pop3s", "stls"])
@pytest.mark.parametrize("size", [1 * KIB, 16383, 16384, 16385, 17 * KIB, 19 * KIB, 40 * KIB])
def test_burst_then_login(server, mode, size):
    """NOOPs, then USER and PASS in the same write: every NOOP +OK, the
    login succeeds and the session answers through the TLS relay."""
    data, n = noop_burst(size)
    c = connect(server, mode)
    try:
        c.send(data + b"USER alice\r\nPASS alice-pw\r\nSTAT\r\n")
        replies = c.lines(n)
        assert replies == ["+OK"] * n, [(i, r) for i, r in enumerate(replies) if r != "+OK"][:3]
        assert c.line() == "+OK"                        # USER
        assert c.line().startswith("+OK Logged in")     # PASS
        assert c.line() == "+OK 1 21"                   # STAT (CRLF), in the session
        c.send(b"QUIT\r\n")
        assert c.line().startswith("+OK")
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["pop3s", "stls"])
def test_burst_then_close_notify(server, mode):
    """A burst and the client's close_notify in one write: the old code
    freed the client inside its own read callback (use after free; the
    ASan build reports it).  The front end must simply drop the client."""
    for size in (16385, 17 * KIB, 18 * KIB, 19 * KIB, 32 * KIB):
        data, n = noop_burst(size)
        c = connect(server, mode)
        c.send(data, close_notify=True)
        # whatever the server answers before it closes, it closes
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                c.line()
        except (EOFError, ssl.SSLError, ConnectionError):
            pass
        finally:
            c.close()
    # and it is still serving
    c = connect(server, mode)
    try:
        c.send(b"NOOP\r\n")
        assert c.line() == "+OK"
    finally:
        c.close()
    assert not re.search(r"front end \d+ ended", server.log_text())
