"""Reloading authd after its privilege drop: the configuration stays
root:root 0640 (as make install creates it) in a directory [authd] user
cannot even traverse, and `authctl reload` and SIGHUP still read it,
through authd's root configuration reader (authd/confreader.c; issue 13
item 3).  Needs root: skipped otherwise."""

import os
import pwd
import re
import shutil
import signal
import tempfile

import pytest

from authdlib import wait_until
from conftest import authctl
from pop3lib import IS_ROOT, passwd_line

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="drops privileges: needs root")


@pytest.fixture
def public_dir():
    """A directory [authd] user can read (pytest's tmp_path it cannot)."""
    d = tempfile.mkdtemp(prefix="authd-reload-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        return re.search(r"^%s:\s+(.*)$" % key, f.read(), re.M).group(1)


def rename_authenticator(conf, old, new):
    with open(conf) as f:
        text = f.read()
    assert "[authenticator %s]" % old in text
    with open(conf, "w") as f:
        f.write(text.replace("[authenticator %s]" % old, "[authenticator %s]" % new))


def authenticator_of(a):
    c = a.client(timeout=10)
    try:
        r = c.auth("alice", "alice-pw", rip="127.0.0.1")
    finally:
        c.close()
    assert r.cmd == "OK", r
    return r.kv["authenticator"]


def test_reload_reads_root_only_config_after_drop(authd_factory, tmp_path, public_dir):
    nobody = pwd.getpwnam("nobody")
    users = os.path.join(public_dir, "users")
    with open(users, "w") as f:
        f.write(passwd_line("alice", "alice-pw", "/nonexistent"))
    os.chmod(users, 0o644)
    a = authd_factory([("pw1", {"type": "passwd-file", "path": users})],
                      extra="user = nobody\n", start=False)
    # As make install leaves it: root:root 0640, in a 0700 directory of root's.
    os.chown(a.conf, 0, 0)
    os.chmod(a.conf, 0o640)
    assert os.stat(os.path.dirname(a.dir)).st_mode & 0o777 == 0o700
    a.start()
    assert int(proc_status(a.proc.pid, "Uid").split()[1]) == nobody.pw_uid
    assert authenticator_of(a) == "pw1"

    # The reader: authd's one child, root, holding nothing but its socket.
    readers = wait_until(lambda: [p for p, st in a.children() if st != "Z"], 10,
                         "the configuration reader")
    assert len(readers) == 1, readers
    reader = readers[0]
    assert proc_status(reader, "Uid").split()[1] == "0"
    fds = {int(n): os.readlink("/proc/%d/fd/%s" % (reader, n))
           for n in os.listdir("/proc/%d/fd" % reader)}
    extra = {n: t for n, t in fds.items() if n > 2}
    assert len(extra) == 1 and list(extra.values())[0].startswith("socket:"), fds
    # nor authd's log (here its stderr), terminal or start directory
    assert [fds.get(n) for n in (0, 1, 2)] == ["/dev/null"] * 3, fds
    assert os.readlink("/proc/%d/cwd" % reader) == "/"

    # authctl reload
    rename_authenticator(a.conf, "pw1", "pw2")
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 0, (r.stdout, r.stderr, a.log_text())
    assert authenticator_of(a) == "pw2"

    # SIGHUP
    ok = a.metric("authd_reloads_total", result="ok")
    rename_authenticator(a.conf, "pw2", "pw3")
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: a.metric("authd_reloads_total", result="ok") == ok + 1, 10,
               "the SIGHUP reload")
    assert authenticator_of(a) == "pw3"

    # A bad file: a clear error, the running configuration kept.
    with open(a.conf, "a") as f:
        f.write("this is not ini\n")
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 1
    assert a.conf in r.stderr and "syntax error" in r.stderr, r.stderr
    assert authenticator_of(a) == "pw3"

    # A file that cannot be read at all (gone, not regular, too big).
    text = open(a.conf).read()
    os.rename(a.conf, a.conf + ".away")
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 1
    assert "%s: cannot open: No such file or directory" % a.conf in r.stderr, r.stderr
    os.mkdir(a.conf)
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    os.rmdir(a.conf)
    with open(a.conf, "w") as f:
        f.write(text.replace("this is not ini\n", "") + "#" * (1024 * 1024) + "\n")
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 1 and "larger than 1048576 bytes" in r.stderr, r.stderr
    assert "reload refused, running configuration kept" in a.log_text()
    assert authenticator_of(a) == "pw3"

    # Fixed again: the reader still serves.
    with open(a.conf, "w") as f:
        f.write(text.replace("this is not ini\n", "").replace("[authenticator pw3]",
                                                            "[authenticator pw4]"))
    os.chmod(a.conf, 0o640)
    r = authctl("-s", a.socket, "reload")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert authenticator_of(a) == "pw4"
    assert reader in [p for p, _ in a.children()]

    # The reader leaves with authd.
    a.stop()

    def gone():
        try:
            with open("/proc/%d/status" % reader) as f:
                return "zombie" in f.read()
        except FileNotFoundError:
            return True
    wait_until(gone, 10, "the reader to exit")


def test_reload_without_its_reader_says_so(authd_factory, public_dir):
    users = os.path.join(public_dir, "users")
    with open(users, "w") as f:
        f.write(passwd_line("alice", "alice-pw", "/nonexistent"))
    os.chmod(users, 0o644)
    a = authd_factory([("pw1", {"type": "passwd-file", "path": users})],
                      extra="user = nobody\n")
    reader = wait_until(lambda: [p for p, st in a.children() if st != "Z"], 10,
                        "the configuration reader")[0]
    os.kill(reader, signal.SIGKILL)
    rename_authenticator(a.conf, "pw1", "pw2")
    for _ in range(2):
        r = authctl("-s", a.socket, "reload")
        assert r.returncode == 1
        assert "root reader is gone" in r.stderr and "restart authd" in r.stderr, r.stderr
    assert "giving up the configuration reader" in a.log_text()
    assert authenticator_of(a) == "pw1"
