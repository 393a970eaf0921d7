"""authd's Dovecot authentication protocol socket ([authd] dovecot-socket):
first spoken raw (the handshake, PLAIN and LOGIN with continuations,
hostile lines), then through a real Postfix started by the test as a
private instance (own configuration and queue directories, a loopback
port, smtpd_sasl_type = dovecot, every transport `discard`: no mail
leaves), driven by swaks with AUTH PLAIN and AUTH LOGIN."""

import base64
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from authdlib import wait_until
from conftest import BUILD, ext_auth, helper_calls
from pop3lib import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Dovecot:
    """A raw client of the Dovecot auth protocol."""

    def __init__(self, path, handshake=True):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(15)
        self.sock.connect(path)
        self.buf = b""
        self.hello = []
        if handshake:
            self.send("VERSION\t1\t0\nCPID\t%d\n" % os.getpid())
            while True:
                line = self.line()
                self.hello.append(line)
                if line == "DONE":
                    break

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("authd closed the connection")
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def reply(self):
        return self.line().split("\t")

    def closed(self):
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, socket.timeout):
            return False


def start(authd_factory, sockdir, authenticators, cache=None, extra=""):
    sock = os.path.join(sockdir, "dovecot.sock")
    a = authd_factory(authenticators, cache=cache,
                      extra="dovecot-socket = %s\n%s" % (sock, extra))
    a.dovecot = sock
    return a


@pytest.fixture
def sockdir():
    """A directory Postfix's smtpd (user postfix) can reach: pytest's
    tmp_path sits below a 0700 directory of root's."""
    d = tempfile.mkdtemp(prefix="authd-pf-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---- the protocol, raw ----------------------------------------------------

def test_handshake_plain_login(authd_factory, tmp_path, helper_users):
    a = start(authd_factory, str(tmp_path), [("ext", ext_auth(helper_users))])
    c = Dovecot(a.dovecot)
    assert c.hello[0] == "VERSION\t1\t2"
    assert "MECH\tPLAIN\tplaintext" in c.hello and "MECH\tLOGIN\tplaintext" in c.hello
    assert [h.split("\t")[0] for h in c.hello[3:]] == ["SPID", "CUID", "COOKIE", "DONE"]
    assert c.hello[3] == "SPID\t%d" % a.proc.pid
    assert len(c.hello[5].split("\t")[1]) == 32
    # PLAIN with an initial response
    c.send("AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.9\tsecured"
           "\tresp=%s\n" % b64("\0carol\0carol-pw"))
    assert c.reply() == ["OK", "1", "user=carol"]
    # PLAIN without one: an empty challenge, then the response
    c.send("AUTH\t2\tPLAIN\tservice=smtp\n")
    assert c.reply() == ["CONT", "2", ""]
    c.send("CONT\t2\t%s\n" % b64("\0carol\0wrong-pw"))
    assert c.reply() == ["FAIL", "2", "user=carol"]
    # LOGIN: user name, then password
    c.send("AUTH\t3\tLOGIN\tservice=smtp\n")
    assert c.reply() == ["CONT", "3", b64("Username:")]
    c.send("CONT\t3\t%s\n" % b64("dave"))
    assert c.reply() == ["CONT", "3", b64("Password:")]
    c.send("CONT\t3\t%s\n" % b64("dave-pw"))
    assert c.reply() == ["OK", "3", "user=dave"]
    # LOGIN with the user name as initial response
    c.send("AUTH\t4\tlogin\tprotocol=imap\tresp=%s\n" % b64("carol"))
    assert c.reply() == ["CONT", "4", b64("Password:")]
    c.send("CONT\t4\t%s\n" % b64("carol-pw"))
    assert c.reply() == ["OK", "4", "user=carol"]
    log = a.log_text()
    assert "auth ok: user=carol service=smtp rip=192.0.2.9" in log
    assert "auth ok: user=carol service=imap" in log
    for pw in ("carol-pw", "dave-pw", "wrong-pw"):
        assert pw not in log


def test_request_errors_get_fail(authd_factory, tmp_path, helper_users):
    a = start(authd_factory, str(tmp_path), [("ext", ext_auth(helper_users))])
    c = Dovecot(a.dovecot)
    c.send("AUTH\t1\tCRAM-MD5\tservice=smtp\n")
    assert c.reply() == ["FAIL", "1", "reason=Unsupported authentication mechanism"]
    c.send("AUTH\t2\tPLAIN\tresp=%s\n" % b64("\0carol\0carol-pw"))
    assert c.reply()[:2] == ["FAIL", "2"]                      # no service
    c.send("AUTH\t3\tPLAIN\tservice=SMTP;x\tresp=%s\n" % b64("\0carol\0carol-pw"))
    assert c.reply()[:2] == ["FAIL", "3"]                      # bad service
    c.send("AUTH\t4\tPLAIN\tservice=smtp\tresp=!!notbase64\n")
    assert c.reply()[:2] == ["FAIL", "4"]
    c.send("AUTH\t5\tPLAIN\tservice=smtp\tresp=%s\n" % b64("admin\0carol\0carol-pw"))
    assert c.reply()[:2] == ["FAIL", "5"]                      # another authzid
    c.send("AUTH\t6\tLOGIN\tservice=smtp\tresp=%s\n" % b64("ca\0rol"))
    assert c.reply()[:2] == ["FAIL", "6"]                      # NUL in the name
    c.send("CONT\t77\t%s\n" % b64("x"))
    assert c.reply()[:2] == ["FAIL", "77"]                     # no such request
    c.send("AUTH\t8\tLOGIN\tservice=smtp\n")
    assert c.reply()[:2] == ["CONT", "8"]
    c.send("CANCEL\t8\n")
    c.send("CONT\t8\t%s\n" % b64("carol"))
    assert c.reply()[:2] == ["FAIL", "8"]                      # cancelled
    # still in business
    c.send("AUTH\t9\tPLAIN\tservice=smtp\tresp=%s\n" % b64("\0carol\0carol-pw"))
    assert c.reply() == ["OK", "9", "user=carol"]
    assert helper_calls(helper_users) == ["carol"]


@pytest.mark.parametrize("lines", [
    "AUTH\t1\tPLAIN\tservice=smtp\n",                 # before VERSION
    "VERSION\t2\t0\n",                                # another major version
    "VERSION\t1\t0\nHELLO\t1\n",                      # unknown command
    "VERSION\t1\t0\nAUTH\tx\tPLAIN\tservice=smtp\n",  # no usable id
    "VERSION\t1\t0\nAUTH\t0\tPLAIN\tservice=smtp\n",
    "VERSION\t1\t0\nAUTH\t1\tLOGIN\tservice=smtp\nAUTH\t1\tLOGIN\tservice=smtp\n",  # id in use
    "VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp\x01\x30\n",  # an escaped NUL
    "VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp\0\n",        # a raw NUL
    "VERSION\t1\t0\n" + "A" * 20000 + "\n",          # too long
    "VERSION\t1\t0\nCPID\t12\nCPID\t13\n",
    "VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp" + "\tx" * 60 + "\n",  # too many fields
])
def test_protocol_errors_close(authd_factory, tmp_path, helper_users, lines):
    a = start(authd_factory, str(tmp_path), [("ext", ext_auth(helper_users))])
    c = Dovecot(a.dovecot, handshake=False)
    c.send(lines)
    assert c.closed(), lines
    # nobody else noticed
    d = Dovecot(a.dovecot)
    d.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=%s\n" % b64("\0carol\0carol-pw"))
    assert d.reply() == ["OK", "1", "user=carol"]


def test_pending_bound_and_tempfail(authd_factory, tmp_path, helper_users):
    a = start(authd_factory, str(tmp_path), [("ext", ext_auth(helper_users, timeout="1s"))])
    c = Dovecot(a.dovecot)
    # 64 requests waiting for their continuation; the 65th gets FAIL temp
    c.send("".join("AUTH\t%d\tLOGIN\tservice=smtp\n" % i for i in range(1, 66)))
    replies = [c.reply() for _ in range(65)]
    assert all(r[0] == "CONT" for r in replies[:64]), replies[:64]
    assert replies[64][:3] == ["FAIL", "65", "temp"], replies[64]
    c.send("".join("CANCEL\t%d\n" % i for i in range(1, 65)))
    # a hung backend: FAIL with temp (Postfix: 454 4.7.0)
    c.send("AUTH\t100\tPLAIN\tservice=smtp\tresp=%s\n" % b64("\0hang1\0x"))
    r = c.reply()
    assert r[:5] == ["FAIL", "100", "user=hang1", "temp", "code=temp_fail"], r
    assert r[5].startswith("reason=Temporary authentication failure"), r


# ---- a real Postfix -------------------------------------------------------

MASTER_CF = """\
{listen} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = authd-test.localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = /dev/stdout
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl_path}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_tls_security_level = none
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
"""


class Postfix:
    """A private Postfix instance under dir (its own configuration and
    queue directories), master in the foreground (`postfix start-fg`)."""

    def __init__(self, d, sasl_path):
        self.dir = d
        self.etc = os.path.join(d, "etc")
        self.port = free_port()
        self.log = os.path.join(d, "postfix.log")
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(d, "data"), pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=d, sasl_path=sasl_path))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen="127.0.0.1:%d" % self.port))
        r = subprocess.run([POSTFIX, "-c", self.etc, "check"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([POSTFIX, "-c", self.etc, "start-fg"],
                                     stdout=self.logf, stderr=self.logf)

        def greets():
            if self.proc.poll() is not None:
                raise AssertionError("postfix exited:\n" + self.log_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    return s.recv(512).startswith(b"220 ")
            except OSError:
                return False
        wait_until(greets, 30, "postfix greeting")

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self):
        subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=60)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


@pytest.fixture
def postfix(sockdir):
    if os.geteuid() != 0:
        pytest.skip("a Postfix instance needs root (master(8) runs as root and its daemons "
                    "switch to mail_owner); CI runs the tests as root")
    if not os.path.exists(POSTFIX) or not os.path.exists(SWAKS):
        pytest.skip("postfix or swaks missing (scripts/install-deps)")
    started = []

    def make():
        p = Postfix(sockdir, os.path.join(sockdir, "dovecot.sock"))
        started.append(p)
        return p
    yield make
    for p in started:
        p.stop()


def swaks(pf, user, password, mech="PLAIN", quit_after="AUTH", timeout=60):
    r = subprocess.run([SWAKS, "-s", "127.0.0.1", "-p", str(pf.port), "--timeout", "30",
                        "--from", "sender@example.org", "--to", "rcpt@example.net",
                        "--auth", mech, "--auth-user", user, "--auth-password", password]
                       + (["--quit-after", quit_after] if quit_after else []),
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


# The group the tests give the socket: Postfix's smtpd runs as postfix.
SOCK_KEYS = "dovecot-socket-group = postfix\n"


def test_postfix_plain_and_login(authd_factory, sockdir, postfix, helper_users):
    a = start(authd_factory, sockdir, [("ext", ext_auth(helper_users))], extra=SOCK_KEYS)
    pf = postfix()
    for mech in ("PLAIN", "LOGIN"):
        out = swaks(pf, "carol", "carol-pw", mech)
        assert "235 2.7.0 Authentication successful" in out, out
        out = swaks(pf, "carol", "Wr0ng-Pa55", mech)
        assert "535 5.7.8" in out, out
        out = swaks(pf, "nobody-here", "carol-pw", mech)
        assert "535 5.7.8" in out, out
    log = a.log_text()
    assert "auth ok: user=carol service=smtp rip=127.0.0.1" in log
    assert "auth failed: user=carol service=smtp rip=127.0.0.1" in log
    assert "carol-pw" not in log and "Wr0ng-Pa55" not in log
    assert "sasl_username=carol" in pf.log_text()


def test_postfix_mail_after_auth_is_discarded(authd_factory, sockdir, postfix, helper_users):
    """Relaying needs a login (permit_sasl_authenticated); the message
    goes to the discard transport, nowhere else."""
    start(authd_factory, sockdir, [("ext", ext_auth(helper_users))], extra=SOCK_KEYS)
    pf = postfix()
    out = swaks(pf, "dave", "dave-pw", "LOGIN", quit_after="")
    assert "235 2.7.0" in out and "250 2.0.0 Ok: queued" in out, out
    wait_until(lambda: "status=sent" in pf.log_text(), 30, "the message discarded")
    sent = [ln for ln in pf.log_text().splitlines() if "status=sent" in ln]
    assert all("postfix/discard" in ln and "relay=none" in ln for ln in sent), sent


def test_postfix_tempfail_on_hung_backend(authd_factory, sockdir, postfix, helper_users):
    """A hung backend: with dovecot-tempfail = disconnect Postfix answers
    454 4.7.0 (try again later), not 535, and a user of another
    authenticator logs in meanwhile.  (Postfix 3.7 takes FAIL temp, the
    default, for a wrong password.)"""
    pwfile = os.path.join(sockdir, "users")
    with open(pwfile, "w") as f:
        f.write("bob:{PLAIN}bob-pw\n")
    start(authd_factory, sockdir, [("pw", {"type": "passwd-file", "path": pwfile}),
                                   ("ext", ext_auth(helper_users, timeout="2s"))],
          extra=SOCK_KEYS + "dovecot-tempfail = disconnect\n")
    pf = postfix()
    t = time.monotonic()
    out = swaks(pf, "hang-user", "whatever", "PLAIN")
    assert "454 4.7.0 Temporary authentication failure" in out, out
    assert "535" not in out
    assert time.monotonic() - t < 15
    out = swaks(pf, "hang-user", "whatever", "LOGIN")
    assert "454 4.7.0" in out, out
    assert "235 2.7.0" in swaks(pf, "bob", "bob-pw", "LOGIN")


def test_postfix_cache_hit(authd_factory, sockdir, postfix, helper_users):
    """Three logins, one backend call: the rest come from authd's cache."""
    start(authd_factory, sockdir, [("ext", ext_auth(helper_users))],
          cache={"positive-ttl": "5m"}, extra=SOCK_KEYS)
    pf = postfix()
    for mech in ("PLAIN", "LOGIN", "PLAIN"):
        assert "235 2.7.0" in swaks(pf, "carol", "carol-pw", mech)
    assert helper_calls(helper_users) == ["carol"]


@pytest.mark.parametrize("line,message", [
    ("dovecot-socket-mode = 0999", "dovecot-socket-mode: expected an octal mode"),
    ("saslauthd-socket-mode = 01777", "saslauthd-socket-mode: expected an octal mode"),
    ("dovecot-tempfail = maybe", "dovecot-tempfail: expected fail or disconnect"),
    ("dovecot-socket-group = no-such-group-here", "dovecot-socket-group no-such-group-here: "
     "no such group"),
    ("dovecot-socket = relative/path", "expected an absolute path"),
])
def test_config_refused(authd_factory, tmp_path, line, message):
    """authd -t refuses what a start would refuse, naming the key."""
    a = authd_factory([("pw", {"type": "passwd-file", "path": "/dev/null"})],
                      extra=line + "\n", start=False)
    r = subprocess.run([os.path.join(BUILD, "authd"), "-t",
                        "-c", a.conf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and message in r.stderr, r
