"""Helpers for the pop3d integration tests: start the real pop3d next to
the real authd (conftest's Authd), build Maildirs, and a raw POP3 client
with bounded waits."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from authdlib import wait_until
from conftest import BUILD, SANITIZER_MARKERS, sanitizer_env
from promparse import parse, value

IS_ROOT = os.geteuid() == 0
# The mailbox owner of the test users when pop3d really drops privileges.
TEST_UID = 41001
TEST_GID = 41001


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class MailRoot:
    """A directory the test users' sessions can reach: pytest's tmp_path
    sits below a 0700 directory of root's, which a session that switched
    to TEST_UID cannot traverse."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="pop3d-test-", dir="/tmp")
        os.chmod(self.path, 0o755)

    def maildir(self, name, messages=(), owner=True):
        """Creates PATH/name/Maildir with messages [(filename-in-new-or-cur, bytes)]
        and returns its path."""
        home = os.path.join(self.path, name)
        md = os.path.join(home, "Maildir")
        for d in ("", "new", "cur", "tmp"):
            os.makedirs(os.path.join(md, d), exist_ok=True)
        for i, (rel, data) in enumerate(messages):
            p = os.path.join(md, rel)
            with open(p, "wb") as f:
                f.write(data)
            os.utime(p, (1000000000 + i, 1000000000 + i))
        if owner:
            self.chown(home)
        return md

    def chown(self, path):
        if not IS_ROOT:
            return
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, TEST_UID, TEST_GID)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), TEST_UID, TEST_GID)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def maildir_contents(md):
    """The content of every message file in md's new/ and cur/, sorted."""
    out = []
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(md, sub)):
            with open(os.path.join(md, sub, name), "rb") as f:
                out.append(f.read())
    return sorted(out)


def user_uid():
    return TEST_UID if IS_ROOT else os.getuid()


def passwd_line(user, password, home, maildrop=None, uid=None):
    uid = user_uid() if uid is None else uid
    gid = TEST_GID if IS_ROOT else os.getgid()
    extra = "maildrop=%s" % maildrop if maildrop else ""
    return "%s:{PLAIN}%s:%d:%d::%s::%s\n" % (user, password, uid, gid, home, extra)


class Pop3d:
    """A running pop3d reading a copy of authd's config with its own
    [pop3d] section."""

    prefix = []     # a command pop3d runs under (e.g. setpriv)

    def __init__(self, authd, tmpdir, keys=None):
        self.dir = str(tmpdir)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "pop3d.conf")
        self.log = os.path.join(self.dir, "pop3d.log")
        self.stats = os.path.join(self.dir, "pop3d-stats.sock")
        chroot = os.path.join(self.dir, "pop3d-empty")
        os.makedirs(chroot, exist_ok=True)
        os.chmod(chroot, 0o755)
        k = {"listen": "127.0.0.1:%d" % self.port,
             "auth-socket": authd.socket,
             "master-auth-socket": authd.master_socket,
             "login-processes": "2",
             "login-user": "nobody",
             "login-chroot": chroot,
             "stats-socket": self.stats,
             "log-level": "debug",
             "auth-failure-delay": "200ms",
             "first-valid-uid": "1000"}
        k.update(keys or {})
        with open(authd.conf) as f:
            text = f.read()
        section = "[pop3d]\n" + "".join("%s = %s\n" % kv for kv in k.items()) + "\n"
        text = re.sub(r"\[pop3d\]\n(?:[^\[\n][^\n]*\n|\n)*", section, text, count=1)
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o600)
        self.proc = None

    def start(self, wait=True):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.prefix + [os.path.join(BUILD, "pop3d"), "-f", "-c",
                                                    self.conf],
                                     stdout=self.logf, stderr=self.logf,
                                     env=sanitizer_env())
        if wait:
            def ready():
                if self.proc.poll() is not None:
                    raise AssertionError("pop3d exited early:\n" + self.log_text())
                try:
                    c = Client(self.port, timeout=5)
                except OSError:
                    return False
                try:
                    return c.greeting.startswith("+OK")
                finally:
                    c.close()
            wait_until(ready, 20, "pop3d greeting")
        return self

    def log_text(self):
        with open(self.log, "r", errors="replace") as f:
            return f.read()

    def wait_log(self, regex, count=1, timeout=10):
        """The log once regex matches count times in it (a session logs
        its logout after the client has the reply to QUIT, so a client can
        be done before the line is written)."""
        wait_until(lambda: len(re.findall(regex, self.log_text(), re.M)) >= count,
                   timeout, "%d log line(s) matching %r" % (count, regex))
        return self.log_text()

    def scrape(self):
        """The stats socket's text (Prometheus exposition format)."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.stats)
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except socket.timeout:
            raise AssertionError("stats socket: reply not ended in 10 s (%d bytes read)\n%s"
                                 % (len(data), self.diagnose())) from None
        finally:
            s.close()
        return data.decode()

    def diagnose(self):
        """What the master is doing, and who holds stats connections: for
        the message of a failed wait."""
        out = []
        for name in ("stat", "wchan", "stack"):
            try:
                with open("/proc/%d/%s" % (self.proc.pid, name)) as f:
                    out.append("master %s: %s" % (name, f.read().strip()))
            except OSError as e:
                out.append("master %s: %s" % (name, e))
        try:
            r = subprocess.run(["ss", "-xpn"], capture_output=True, text=True, timeout=10)
            out += [line for line in r.stdout.splitlines() if self.stats in line]
        except (OSError, subprocess.SubprocessError) as e:    # no ss (iproute2)
            out.append("ss: %s" % e)
        return "\n".join(out)

    def metrics(self):
        """The stats, strictly parsed: {(name, labels): value}."""
        return parse(self.scrape())[0]

    def metric(self, name, **labels):
        """One value (the sum of the series of name with these labels)."""
        return value(self.metrics(), name, **labels)

    def children(self):
        """(pid, comm-ish, uid) of pop3d's direct children."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    st = f.read()
                with open("/proc/%s/status" % pid) as f:
                    status = f.read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
                out.append((int(pid), uid))
        return out

    def stop(self, check=True):
        if self.proc is None:
            return 0
        rc = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("pop3d did not stop on SIGTERM:\n" + self.log_text())
        elif self.proc is not None:
            rc = self.proc.returncode
        self.logf.close()
        # every child (front ends, sessions) must be gone too
        log = self.log_text()
        if check:
            for m in SANITIZER_MARKERS:
                assert m not in log, "sanitizer report in pop3d log:\n" + log
            assert rc == 0, "pop3d exit status %s:\n%s" % (rc, log)
        return rc


class Client:
    """A raw POP3 client: bytes in, lines out, every wait bounded.  With
    tls (an ssl.SSLContext) the connection is TLS from the start (POP3S);
    starttls() upgrades a plain one after STLS."""

    def __init__(self, port, timeout=10, greet=True, tls=None, server_hostname="localhost",
                 host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.received = 0       # bytes read from the server (decrypted, for TLS)
        self.timeout = timeout
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        self.greeting = self.line() if greet else None

    def starttls(self, ctx, server_hostname="localhost"):
        """TLS handshake on the connection (after "+OK" to STLS).  Anything
        the server sent in plain text after that reply is an error."""
        assert self.buf == b"", "plain text after the STLS reply: %r" % self.buf
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line; have %r" % self.buf)
            self.sock.settimeout(left)
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("connection closed; have %r" % self.buf)
            self.received += len(d)
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("latin-1")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multiline(self):
        """The body of a multi-line reply, dot-unstuffed, as bytes."""
        out = []
        while True:
            line = self.line()
            if line == ".":
                return "\r\n".join(out).encode("latin-1") + (b"\r\n" if out else b"")
            out.append(line[1:] if line.startswith(".") else line)

    def closed(self, timeout=5):
        """True once the server closed the connection (data before EOF is kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, ssl.SSLError):
                return True
            if not d:
                return True
            self.received += len(d)
            self.buf += d
        return False

    def close(self):
        self.sock.close()
