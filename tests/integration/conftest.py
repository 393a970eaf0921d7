"""Fixtures shared by the integration tests: start the real authd on a
UNIX socket in a temporary directory, talk its protocol, and check that it
stopped cleanly (no sanitizer report, exit status 0)."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from authdlib import AuthdClient, proc_table, wait_until  # noqa: E402
from promparse import parse, value  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD_DIR", os.path.join(REPO, "build"))
HELPERS = os.path.join(os.path.dirname(__file__), "helpers")
PYTHON = "/usr/bin/python3"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "WARNING: ThreadSanitizer", "runtime error:")


def sanitizer_env():
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=66"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=66"
    env["TSAN_OPTIONS"] = "halt_on_error=0:exitcode=66:second_deadlock_stack=1"
    return env


class Authd:
    """A running authd with its config in `self.dir`."""

    def __init__(self, tmpdir, authenticators, extra="", cache=None):
        self.dir = str(tmpdir)
        self.socket = os.path.join(self.dir, "auth.sock")
        self.master_socket = os.path.join(self.dir, "master.sock")
        self.stats_socket = os.path.join(self.dir, "authd-stats.sock")
        self.conf = os.path.join(self.dir, "authd.conf")
        self.log = os.path.join(self.dir, "authd.log")
        # The cache is off unless a test asks for it (a dict of [cache] keys),
        # so that tests of the backends see every request reach them.
        cache_keys = {"enabled": "no"} if cache is None else dict(cache, enabled="yes")
        text = ("[authd]\nsocket = %s\nmaster-socket = %s\nstats-socket = %s\n"
                "log-level = debug\n%s\n"
                "[cache]\n%s\n"
                "[pop3d]\nlisten = 127.0.0.1:1\nauth-socket = %s\n"
                "master-auth-socket = %s\n\n"
                % (self.socket, self.master_socket, self.stats_socket, extra,
                   "".join("%s = %s\n" % kv for kv in cache_keys.items()),
                   self.socket, self.master_socket))
        for name, keys in authenticators:
            text += "[authenticator %s]\n" % name
            for k, v in keys.items():
                text += "%s = %s\n" % (k, v)
            text += "\n"
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o600)
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "authd"), "-f", "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf,
                                     env=sanitizer_env())

        # Ready when its loop answers the handshake: the socket accepts
        # (into its backlog) before authd has finished starting.
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("authd exited early:\n" + self.log_text())
            try:
                AuthdClient(self.socket, timeout=5).close()
                return True
            except (OSError, EOFError):
                return False
        wait_until(ready, 20, "authd answering")
        return self

    def metric(self, name, **labels):
        """One value of the stats, strictly parsed (the sum of the series
        of name with these labels)."""
        return value(parse(self.scrape())[0], name, **labels)

    def scrape(self):
        """The stats socket's text."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.stats_socket)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data.decode()

    def client(self, timeout=30):
        return AuthdClient(self.socket, timeout=timeout)

    def log_text(self):
        with open(self.log, "r", errors="replace") as f:
            return f.read()

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def children(self):
        """pids of authd's direct children (helpers), zombies included."""
        return [(pid, state) for pid, (ppid, state) in proc_table().items()
                if ppid == self.proc.pid]

    def stop(self, check=True):
        if self.proc is None or self.proc.poll() is not None:
            rc = self.proc.returncode if self.proc else 0
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
                raise AssertionError("authd did not stop on SIGTERM:\n" + self.log_text())
        self.logf.close()
        log = self.log_text()
        if check:
            for m in SANITIZER_MARKERS:
                assert m not in log, "sanitizer report in authd log:\n" + log
            assert rc == 0, "authd exit status %s:\n%s" % (rc, log)
        return rc


@pytest.fixture
def authd_factory(tmp_path):
    started = []

    def make(authenticators, extra="", start=True, cache=None):
        a = Authd(tmp_path, authenticators, extra, cache)
        started.append(a)
        return a.start() if start else a
    yield make
    for a in started:
        if a.proc is not None:
            a.stop()


@pytest.fixture
def helper_users(tmp_path):
    """(users file, pid dir) for helpers/ext_helper.py: carol has a uid and a
    home, dave only a password."""
    path = tmp_path / "ext-users"
    path.write_text("carol:carol-pw:2001:/home/carol\ndave:dave-pw\n")
    piddir = tmp_path / "pids"
    piddir.mkdir()
    return str(path), str(piddir)


def ext_auth(helper_users, **keys):
    """An [authenticator] of type external running helpers/ext_helper.py."""
    users, piddir = helper_users
    d = {"type": "external",
         "program": "%s %s/ext_helper.py %s %s" % (PYTHON, HELPERS, users, piddir),
         "workers": "2", "timeout": "2s"}
    d.update(keys)
    return d


def helper_calls(helper_users):
    """The user names the external helpers were asked about, in order."""
    try:
        with open(os.path.join(helper_users[1], "calls")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def authctl(*args, password=None):
    return subprocess.run([os.path.join(BUILD, "authctl")] + list(args),
                          input=(password + "\n") if password is not None else "",
                          capture_output=True, text=True, timeout=30)
