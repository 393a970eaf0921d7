"""`authctl pw`: every scheme it writes, made by the real authctl from a
pipe, put in a passwd-file and checked by the real authd (right password
accepted, wrong one refused); the terminal mode through a pty."""

import os
import pty
import secrets
import select
import signal
import subprocess
import termios
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import BUILD, authctl

AUTHCTL = os.path.join(BUILD, "authctl")
# What no salted scheme may give twice for one password.
UNSALTED = {"SHA512", "SHA256", "SHA1", "SHA", "PLAIN-MD5", "LDAP-MD5", "CRAM-MD5",
            "HMAC-MD5", "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC"}


def pw(*args, password=None, raw=None):
    """authctl pw ARGS with password + LF (or raw bytes) on a pipe."""
    data = raw if raw is not None else (password + "\n").encode() if password is not None \
        else b""
    return subprocess.run([AUTHCTL, "pw"] + list(args), input=data, capture_output=True,
                          timeout=120)


def schemes():
    r = pw("-l")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.decode().splitlines()]
    assert names[0] == "ARGON2ID" and len(names) >= 28, names
    return names


def user_of(scheme):
    return "u-" + scheme.lower()


def password_for(scheme):
    """A random password with a ':', a blank and UTF-8 in it; 8 bytes for
    DES-CRYPT (it reads no more, and authctl refuses a longer one)."""
    if scheme == "DES-CRYPT":
        return "d:" + secrets.token_hex(3)
    return "p: \u00e4" + secrets.token_urlsafe(16)


def write_file(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    os.chmod(path, 0o600)


def test_every_scheme_through_authd(authd_factory, tmp_path):
    names = schemes()
    passwords = {s: password_for(s) for s in names}

    # Each scheme twice: a whole line with -u/-U/-G/-H, and a bare hash.
    def make(job):
        s, i = job
        if i == 0:
            r = pw("-s", s, "-u", user_of(s), "-U", str(3000 + names.index(s)),
                   "-G", "3000", "-H", "/home/" + user_of(s), password=passwords[s])
        else:
            r = pw("-s", s.lower(), password=passwords[s])
        assert r.returncode == 0, (s, r.stderr)
        out = r.stdout.decode()
        assert out.endswith("\n") and out.count("\n") == 1, (s, out)
        assert passwords[s].encode() not in r.stderr, s
        return s, i, out.rstrip("\n"), r.stderr.decode()

    with ThreadPoolExecutor(2) as ex:
        made = list(ex.map(make, [(s, i) for s in names for i in (0, 1)]))
    lines, hashes = [], {}
    for s, i, out, err in made:
        if i == 0:
            assert out.startswith(user_of(s) + ":{" + s), out
            assert out.endswith(":3000::/home/%s::" % user_of(s)), out
            lines.append(out)
            hashes.setdefault(s, []).append(out.split(":")[1])
        else:
            assert out.startswith("{" + s) and ":" not in out, out
            lines.append("%s-2:%s" % (user_of(s), out))
            hashes.setdefault(s, []).append(out)
        # A warning for every weak scheme, none for the strong ones.
        assert ("warning" in err) == (s in UNSALTED or s in ("MD5", "MD5-CRYPT", "DES-CRYPT",
                                                            "SSHA", "SSHA256", "SSHA512",
                                                            "SMD5")), (s, err)
    for s, (a, b) in hashes.items():
        assert (a == b) == (s in UNSALTED), (s, a, b)
    path = tmp_path / "users"
    write_file(path, lines)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "workers": "2",
                               "timeout": "60s"})])
    log = a.log_text()
    assert "loaded %d users" % (2 * len(names)) in log and "skipped" not in log, log

    def check(job):
        s, user = job
        good = authctl("-s", a.socket, "test", user, password=passwords[s])
        bad = authctl("-s", a.socket, "test", user, password=passwords[s][:-1] + "!")
        return s, user, good, bad

    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(check, [(s, u) for s in names
                                      for u in (user_of(s), user_of(s) + "-2")]))
    for s, user, good, bad in results:
        assert good.returncode == 0 and good.stdout.startswith("OK"), (s, good.stdout,
                                                                       good.stderr)
        if not user.endswith("-2"):
            assert "uid=%d" % (3000 + names.index(s)) in good.stdout, good.stdout
            assert "home=/home/%s" % user in good.stdout, good.stdout
        assert bad.returncode == 1 and bad.stdout.startswith("FAIL"), (s, bad.stdout)


def test_rounds_option_through_authd(authd_factory, tmp_path):
    p = "r-" + secrets.token_hex(8)
    lines = []
    for s, r, want in (("PBKDF2", "2000", "$2000$"), ("SCRAM-SHA-256", "5000", "}5000,"),
                       ("SHA512-CRYPT", "6000", "$rounds=6000$"), ("BLF-CRYPT", "5", "$05$"),
                       ("ARGON2ID", "3", ",t=3,")):
        res = pw("-s", s, "-r", r, "-u", "r-" + s.lower(), password=p)
        assert res.returncode == 0 and want in res.stdout.decode(), (s, res)
        lines.append(res.stdout.decode().rstrip("\n"))
    path = tmp_path / "users"
    write_file(path, lines)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path)})])
    for line in lines:
        user = line.split(":")[0]
        assert authctl("-s", a.socket, "test", user, password=p).returncode == 0, line
        assert authctl("-s", a.socket, "test", user, password=p + "x").returncode == 1, line


def test_bad_command_lines_exit_2():
    for args, words in ((["-s", "NOPE"], "unknown scheme NOPE"),
                        (["-s", "DIGEST-MD5"], "unknown scheme"),
                        (["-s", "SHA256", "-r", "5000"], "takes no rounds"),
                        (["-s", "PBKDF2", "-r", "99999999"], "rounds"),
                        (["-u", "a:b"], "-u: not a passwd-file user name"),
                        (["-u", ""], "-u"),
                        (["-U", "5"], "need -u"),
                        (["-u", "x", "-U", "-1"], "-U / -G"),
                        (["-u", "x", "-H", "rel/dir"], "-H"),
                        (["-q"], "unknown option -q"),
                        (["-s"], "-s needs a value"),
                        (["extra"], "unexpected argument")):
        # A password is there to read, but never read: the line is refused first.
        r = pw(*args, password="never-read")
        err = r.stderr.decode()
        assert r.returncode == 2 and words in err and "usage: authctl pw" in err, (args, err)
        assert r.stdout == b"", args


def test_help():
    r = pw("-h")
    assert r.returncode == 0 and r.stdout.startswith(b"usage: authctl pw") and r.stderr == b""


def test_refused_passwords():
    for raw, code, words in ((b"", 64, "no password on standard input"),
                             (b"\n", 64, "empty password"),
                             (b"a\0b\n", 1, "NUL byte"),
                             (b"abc\r\n", 1, "CR or LF"),
                             (b"x" * 1025 + b"\n", 1, "over 1024 bytes"),
                             (b"x" * 5000 + b"\n", 1, "over 1024 bytes")):
        r = pw(raw=raw)
        assert r.returncode == code and words in r.stderr.decode(), (raw[:20], r)
        assert r.stdout == b""
    # Truncating schemes refuse what they would not read.
    r = pw("-s", "DES-CRYPT", password="123456789")
    assert r.returncode == 1 and b"reads only 8 bytes" in r.stderr, r
    r = pw("-s", "BLF-CRYPT", "-r", "4", password="y" * 73)
    assert r.returncode == 1 and b"reads only 72 bytes" in r.stderr, r
    # Only the first line is the password; the longest authd takes is fine.
    r = pw("-s", "PLAIN", raw=b"x" * 1024 + b"\nsecond line\n")
    assert r.returncode == 0 and r.stdout == b"{PLAIN}" + b"x" * 1024 + b"\n", r


class Pty:
    """authctl pw on a pseudo-terminal (stdin and stderr), stdout a pipe."""

    def __init__(self, *args):
        self.master, self.slave = os.openpty()
        assert self.echo_on()   # a fresh pty echoes; checked before authctl runs
        self.proc = subprocess.Popen([AUTHCTL, "pw"] + list(args), stdin=self.slave,
                                     stdout=subprocess.PIPE, stderr=self.slave,
                                     start_new_session=True)
        self.seen = b""

    def read_until(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, "no %r on the terminal: %r" % (text, self.seen)
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                assert chunk, "terminal closed before %r: %r" % (text, self.seen)
                self.seen += chunk
        return self.seen

    def echo_on(self):
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def type(self, text):
        os.write(self.master, text)

    def finish(self):
        out, _ = self.proc.communicate(timeout=60)
        # Whatever it still wrote to the terminal.
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        return self.proc.returncode, out

    def close(self):
        os.close(self.master)
        os.close(self.slave)


def test_terminal_twice_without_echo(authd_factory, tmp_path):
    secret = "tty-" + secrets.token_hex(8)
    t = Pty("-u", "tty-user")
    try:
        t.read_until(b"Password: ")
        assert not t.echo_on()
        t.type(secret.encode() + b"\n")
        t.read_until(b"Retype password: ")
        t.type(secret.encode() + b"\n")
        rc, out = t.finish()
        assert rc == 0, t.seen
        assert secret.encode() not in t.seen, t.seen   # never echoed
        assert t.echo_on()                                # echo back on
    finally:
        t.close()
    line = out.decode().rstrip("\n")
    assert line.startswith("tty-user:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"), line
    path = tmp_path / "users"
    write_file(path, [line])
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path)})])
    assert authctl("-s", a.socket, "test", "tty-user", password=secret).returncode == 0
    assert authctl("-s", a.socket, "test", "tty-user", password=secret + "x").returncode == 1


def test_terminal_mismatch_refused():
    t = Pty()
    try:
        t.read_until(b"Password: ")
        t.type(b"first-password\n")
        t.read_until(b"Retype password: ")
        t.type(b"other-password\n")
        rc, out = t.finish()
        t.read_until(b"the passwords differ")
        assert rc == 1 and out == b"", (rc, out)
        assert b"first-password" not in t.seen and b"other-password" not in t.seen
        assert t.echo_on()
    finally:
        t.close()


def test_terminal_signal_restores_echo():
    t = Pty()
    try:
        t.read_until(b"Password: ")
        assert not t.echo_on()
        t.proc.send_signal(signal.SIGTERM)
        rc, out = t.finish()
        assert rc == -signal.SIGTERM and out == b"", rc
        assert t.echo_on()
    finally:
        t.close()
