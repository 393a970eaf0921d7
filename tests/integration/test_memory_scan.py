"""No password outlives its request in memory (issue 15, item 3).

Many logins with unique random passwords, right and wrong, over plain
text, STLS and POP3S, with USER/PASS and AUTH PLAIN (initial response and
continuation), each first uncached and then again from authd's cache, for
each authenticator type (passwd-file, pam through pam_wrapper, external,
checkpassword, ldap in bind mode); then the whole writable memory of authd,
the pop3d master, every front end, every session process and authd's own
helper (authd-pam-helper) is read through /proc/PID/maps and
/proc/PID/mem, and none of the passwords, nor any 8-byte piece of one,
nor any 8 characters of base64 that encode only password bytes (the AUTH
PLAIN line), may be found.

Not scanned, by design: the external and checkpassword programs of these
tests are Python scripts standing for the operator's own programs (authd
cannot wipe another program's memory; docs/reliability.md says so), slapd
(the directory's process), and the kernel's socket buffers.

The passwd-file holds hashes (SSHA512 through libcrypto, SHA512-CRYPT
through libcrypt, ARGON2ID through libsodium), never the passwords: a
{PLAIN} file holds them by design.  Some logins stay open during the scan
(their TLS relay and their session live on).

Reading another process's memory needs root (ptrace access): the test is
skipped otherwise, and in the sanitizer builds (their allocators replace
glibc's; the wiping hooks run there too, but the claim is checked on the
plain build).  With MEMSCAN_EXPECT_LEAKS=1 it prints what it found
instead of failing: run against a build without the wiping
(docs/reliability.md, "Memory scan"), that is how it was shown to fail.
"""

import base64
import ctypes
import hashlib
import os
import re
import secrets
import string
import subprocess
import threading

import pytest

from authdlib import descendants
from conftest import HELPERS, PYTHON
from pop3lib import IS_ROOT, Client, Pop3d, passwd_line, user_uid, TEST_GID
from test_pop3d import mailroot  # noqa: F401
from test_tls import Pki

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not IS_ROOT, reason="reading /proc/PID/mem needs root"),
              # the sanitizers' allocators keep freed blocks in a quarantine
              # and ignore glibc's perturb: the claim is the plain build's
              pytest.mark.skipif(bool(os.environ.get("SANITIZER")),
                                 reason="the plain build's allocator is the one checked")]

ALPHABET = string.ascii_letters + string.digits
WINDOW = 8
# Runs of characters a password, or the base64 of one, is made of: the
# scanner looks only inside such runs, which keeps it fast.
RUN = re.compile(rb"[A-Za-z0-9+/]{%d,}" % WINDOW)

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PAM_MATRIX = LIBDIR + "/pam_wrapper/pam_matrix.so"
PAM_WRAPPER = LIBDIR + "/libpam_wrapper.so"
SLAPD = "/usr/sbin/slapd"


def hashed(password, i):
    """A stored hash of password, in one of three schemes by i."""
    pw = password.encode()
    kind = i % 3
    if kind == 0:
        salt = secrets.token_bytes(8)
        return "{SSHA512}" + base64.b64encode(hashlib.sha512(pw + salt).digest() + salt).decode()
    if kind == 1:
        return "{SHA512-CRYPT}" + subprocess.check_output(
            ["openssl", "passwd", "-6", "-stdin"], input=password, text=True).strip()
    sodium = ctypes.CDLL("libsodium.so.23")
    assert sodium.sodium_init() >= 0
    out = ctypes.create_string_buffer(128)
    # crypto_pwhash_ALG_ARGON2ID13 = 2; small costs: the test is about memory
    assert sodium.crypto_pwhash_str_alg(out, pw, ctypes.c_ulonglong(len(pw)),
                                        ctypes.c_ulonglong(2), ctypes.c_size_t(8 << 20), 2) == 0
    return "{ARGON2ID}" + out.value.decode()


def secret(n=20):
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def plain_b64(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def needles(user, password):
    """{8-byte piece: password} for every piece of the password and every
    8 base64 characters of its AUTH PLAIN response that encode password
    bytes only."""
    out = {}
    pw = password.encode()
    for i in range(len(pw) - WINDOW + 1):
        out[pw[i:i + WINDOW]] = password
    prefix = len(user) + 2
    b64 = plain_b64(user, password).rstrip("=").encode()
    # character i carries bits 6i .. 6i+5, i.e. from byte 6i // 8 on
    first = next(i for i in range(len(b64)) if (6 * i) // 8 >= prefix)
    for i in range(first, len(b64) - WINDOW + 1):
        out[b64[i:i + WINDOW]] = password
    return out


def exe_name(pid):
    try:
        return os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        return "?"


def scan(pid, table):
    """[(password, region, offset, bytes around)] found in pid's writable
    memory."""
    found = []
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read().splitlines()
        mem = open("/proc/%d/mem" % pid, "rb", buffering=0)
    except (FileNotFoundError, ProcessLookupError):
        return found            # it has exited: nothing left to read
    with mem:
        for line in maps:
            fields = line.split(None, 5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else "[anon]"
            if fields[1][1] != "w" or name in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            for m in RUN.finditer(data):
                run = m.group()
                for i in range(len(run) - WINDOW + 1):
                    pw = table.get(run[i:i + WINDOW])
                    if pw is not None:
                        off = m.start() + i
                        found.append((pw, name, off, data[max(0, off - int(os.environ.get("MEMSCAN_BEFORE", "24"))):off + 40]))
                        break
    return found


class Logins:
    """Drives the logins and remembers every password sent."""

    def __init__(self, pop3d, pki):
        self.p = pop3d
        self.pki = pki
        self.table = {}
        self.count = 0
        self.tls_port = int(re.search(r"^listen-tls = 127\.0\.0\.1:(\d+)$",
                                      open(pop3d.conf).read(), re.M).group(1))

    def connect(self, how):
        if how == "pop3s":
            return Client(self.tls_port, timeout=15, tls=self.pki.context())
        c = Client(self.p.port, timeout=15)
        if how == "stls":
            assert c.cmd("STLS").startswith("+OK")
            c.starttls(self.pki.context())
        return c

    def login(self, how, mech, user, password, record=True):
        """One login; True if it was accepted (then QUIT)."""
        if record:
            self.table.update(needles(user, password))
            self.count += 1
        c = self.connect(how)
        try:
            if mech == "user":
                assert c.cmd("USER " + user).startswith("+OK")
                r = c.cmd("PASS " + password)
            elif mech == "plain-ir":
                r = c.cmd("AUTH PLAIN " + plain_b64(user, password))
            else:
                assert c.cmd("AUTH PLAIN") == "+ "
                r = c.cmd(plain_b64(user, password))
            if r.startswith("+OK"):
                assert c.cmd("QUIT").startswith("+OK")
                return True
            assert r.startswith("-ERR"), r
            return False
        finally:
            c.close()

    def run(self, users):
        """For each user (one per way in), a wrong password then the right
        one, twice each: the second time authd answers from its cache."""
        for (how, mech), (user, password) in zip(WAYS, users):
            for _ in range(2):
                assert not self.login(how, mech, user, secret()), (how, mech, user)
                assert self.login(how, mech, user, password), (how, mech, user)

    def burst(self, users, clients=8, each=8):
        """Wrong passwords from several clients at once, every way in:
        many buffers live at the same time, then freed."""
        errors = []
        lock = threading.Lock()

        def client(k):
            try:
                for i in range(each):
                    how, mech = WAYS[(k + i) % len(WAYS)]
                    user = users[(k * each + i) % len(users)][0]
                    password = secret()
                    with lock:
                        self.table.update(needles(user, password))
                        self.count += 1
                    assert not self.login(how, mech, user, password, record=False)
            except Exception as e:      # reported in the test's thread
                errors.append(e)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "burst clients still running"
        assert errors == [], errors

    def hold(self, users, ways=("plain", "stls", "pop3s")):
        """Logs each user in (plain, STLS, POP3S in turn) and keeps the
        sessions open: the caller closes the clients returned."""
        held = []
        for how, (user, password) in zip(ways, users):
            self.table.update(needles(user, password))
            self.count += 1
            c = self.connect(how)
            held.append(c)
            assert c.cmd("AUTH PLAIN " + plain_b64(user, password)).startswith("+OK")
            assert c.cmd("STAT").startswith("+OK")
        return held


WAYS = [(how, mech) for how in ("plain", "stls", "pop3s")
        for mech in ("user", "plain-ir", "plain-cont")]
USERS = len(WAYS) + 3       # 3 more for the sessions held open


def processes(authd, pop3d):
    """(pid, what) of every process that is ours to scan."""
    out = []
    for root, what in ((authd.proc.pid, "authd"), (pop3d.proc.pid, "pop3d")):
        for pid in descendants(root):
            exe = exe_name(pid)
            # the external and checkpassword programs of the tests are
            # Python scripts standing for third-party programs
            if exe.startswith("python"):
                continue
            out.append((pid, "%s %s" % (what, exe)))
    return out


def assert_no_password(authd, pop3d, logins):
    procs = processes(authd, pop3d)
    # authd, master, 2 front ends, open sessions (and spares)
    assert len(procs) >= 5, procs
    total = []
    for pid, what in procs:
        for pw, region, off, around in scan(pid, logins.table):
            total.append("%s (pid %d): a piece of %s in %s at +%#x: %r"
                         % (what, pid, pw, region, off, around))
    passwords = len(set(logins.table.values()))
    report = "%d logins, %d passwords, %d processes: %d found" % (
        logins.count, passwords, len(procs), len(total))
    print(report)
    if os.environ.get("MEMSCAN_EXPECT_LEAKS"):
        print("\n".join(total))
        return
    assert total == [], report + "\n" + "\n".join(total[:50])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_keys(pki):
    from pop3lib import free_port
    return {"listen-tls": "127.0.0.1:%d" % free_port(), "starttls": "yes",
            "tls-cert-file": pki.cert, "tls-key-file": pki.key,
            "auth-failure-delay": "0", "max-auth-failures": "100"}


def make_users(mailroot, n=USERS, prefix="u"):  # noqa: F811
    users = []
    for i in range(n):
        name = "%s%d%s" % (prefix, i, secret(4).lower())
        mailroot.maildir(name, [("new/1.M1.host", b"Subject: x\n\nx\n")])
        users.append((name, secret()))
    return users


def start(authd_factory, tmp_path, pki, auths):
    a = authd_factory(auths, cache={"positive-ttl": "1h", "negative-ttl": "1h"})
    p = Pop3d(a, tmp_path, tls_keys(pki))
    p.start()
    return a, p


def check(authd_factory, tmp_path, pki, auths, users, hold=("plain", "stls", "pop3s")):
    a, p = start(authd_factory, tmp_path, pki, auths)
    held = []
    try:
        logins = Logins(p, pki)
        logins.run(users)
        logins.burst(users)
        held = logins.hold(users[len(WAYS):], hold)
        assert_no_password(a, p, logins)
    finally:
        for c in held:
            c.close()
        p.stop()


def test_passwd_file(authd_factory, tmp_path, pki, mailroot):  # noqa: F811
    users = make_users(mailroot)
    pw = tmp_path / "users"
    pw.write_text("".join(passwd_line(u, "x", os.path.join(mailroot.path, u))
                          .replace("{PLAIN}x", hashed(s, i))
                          for i, (u, s) in enumerate(users)))
    check(authd_factory, tmp_path, pki, [("pw", {"type": "passwd-file", "path": str(pw)})],
          users)


def test_external_and_checkpassword(authd_factory, tmp_path, pki, mailroot):  # noqa: F811
    """Users of the external helper first in the chain, then of the
    checkpassword program (unknown to the first)."""
    users = make_users(mailroot, 2 * USERS)
    ext, chk = users[:USERS], users[USERS:]
    piddir = tmp_path / "pids"
    piddir.mkdir()
    for name, group in (("ext-users", ext), ("chk-users", chk)):
        (tmp_path / name).write_text("".join(
            "%s:%s:%d:%s\n" % (u, s, user_uid(), os.path.join(mailroot.path, u))
            for u, s in group))
    gid = str(TEST_GID if IS_ROOT else os.getgid())
    auths = [("ext", {"type": "external", "workers": "2", "timeout": "5s", "default-gid": gid,
                      "program": "%s %s/ext_helper.py %s %s" % (
                          PYTHON, HELPERS, tmp_path / "ext-users", piddir)}),
             ("chk", {"type": "checkpassword", "workers": "2", "timeout": "5s",
                      "default-gid": gid,
                      "program": "%s %s/checkpw.py %s" % (PYTHON, HELPERS,
                                                          tmp_path / "chk-users")})]
    a, p = start(authd_factory, tmp_path, pki, auths)
    held = []
    try:
        logins = Logins(p, pki)
        logins.run(ext)
        logins.run(chk)
        logins.burst(users)
        held = logins.hold(ext[len(WAYS):]) + logins.hold(chk[len(WAYS):len(WAYS) + 1])
        assert_no_password(a, p, logins)
    finally:
        for c in held:
            c.close()
        p.stop()


@pytest.mark.skipif(not os.path.exists(PAM_MATRIX), reason="pam_wrapper is not installed")
def test_pam(authd_factory, tmp_path, pki, mailroot):  # noqa: F811
    users = make_users(mailroot)
    svc = tmp_path / "svc"
    svc.mkdir()
    passdb = tmp_path / "passdb"
    passdb.write_text("".join("%s:%s:pop3\n" % u for u in users))
    m = "%s passdb=%s" % (PAM_MATRIX, passdb)
    (svc / "pop3").write_text("auth required %s\naccount required %s\n" % (m, m))
    # an operator's GLIBC_TUNABLES must not undo authd's for the helper
    env = ("LD_PRELOAD=%s PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=%s "
           "GLIBC_TUNABLES=glibc.malloc.tcache_count=7" % (PAM_WRAPPER, svc))
    # every user has the same home in pam: one Maildir for them all
    home = os.path.join(mailroot.path, users[0][0])
    auths = [("pam", {"type": "pam", "service": "pop3", "workers": "2", "timeout": "5s",
                      "environment": env, "default-uid": str(user_uid()),
                      "default-gid": str(TEST_GID if IS_ROOT else os.getgid()),
                      "default-home": home})]
    # one session held: they share a Maildir
    check(authd_factory, tmp_path, pki, auths, users, hold=("pop3s",))


@pytest.fixture(scope="module")
def ldap_certs(tmp_path_factory):
    from test_ldap import make_cert
    return make_cert(str(tmp_path_factory.mktemp("ldapcerts")), "server")


@pytest.mark.skipif(not os.path.exists(SLAPD), reason="slapd is not installed")
@pytest.mark.parametrize("transport", ["ldap", "ldaps"])
def test_ldap_bind(authd_factory, tmp_path, pki, mailroot, ldap_certs, transport):  # noqa: F811
    """mode = bind: the password goes to the directory in libldap's BER
    buffers, and over ldaps:// through GnuTLS's record buffers too (the
    directory itself is slapd's)."""
    from test_ldap import BASE, Slapd, ldap_auth
    users = make_users(mailroot)
    tls = transport == "ldaps"
    s = Slapd(tmp_path / "slapd", loglevel="0", tls=ldap_certs if tls else None)
    ldif = tmp_path / "users.ldif"
    entries = []
    for name, password in users:
        salt = secrets.token_bytes(8)
        h = base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()
        entries.append("dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\n"
                       "objectClass: posixAccount\ncn: %s\nsn: %s\nuid: %s\n"
                       "uidNumber: %d\ngidNumber: %d\nhomeDirectory: %s\n"
                       "userPassword: {SSHA}%s\n"
                       % (name, BASE, name, name, name, user_uid(),
                          TEST_GID if IS_ROOT else os.getgid(),
                          os.path.join(mailroot.path, name), h))
    ldif.write_text("\n".join(entries))
    subprocess.run(["/usr/sbin/slapadd", "-q", "-f", s.conf, "-l", str(ldif)],
                   check=True, capture_output=True)
    s.start()
    try:
        auth = (ldap_auth(s.ldaps_uri, **{"ca-file": ldap_certs[0]}) if tls
                else ldap_auth(s.uri))
        check(authd_factory, tmp_path, pki, [("ldap", auth)], users)
    finally:
        s.kill()
