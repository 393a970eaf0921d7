"""authd's LDAP authenticator (type = ldap) against a real, throwaway slapd.

Each test starts its own slapd on a free 127.0.0.1 port, with an mdb
database loaded by slapadd from ldap/directory.ldif (users, hashes and the
reason each exists are listed at its top) and the configuration in
ldap/slapd.conf.in.  slapd runs in the foreground with the "stats" log
level, so the tests read what it was asked (filters, binds) from its log.
The fixture kills every slapd it started, frozen or not, whatever the
test's outcome.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from authdlib import wait_until
from conftest import BUILD

pytestmark = pytest.mark.threaded

LDAPDIR = os.path.join(os.path.dirname(__file__), "ldap")
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
BASE = "dc=example,dc=org"
SERVICE_DN = "cn=authd,ou=system,dc=example,dc=org"
SERVICE_PW = "authd-secret"
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
# Sanitizer builds are slower: answers may come later than the timeout by
# more than in a plain build.
SLACK = 0.8 if os.path.basename(BUILD.rstrip("/")) in ("address", "thread", "undefined") \
    else 0.4

# An anonymous LDAPv3 bind request (message id 1) and the start of any
# bind response: enough to tell that slapd serves requests.
BIND_REQUEST = bytes.fromhex("300c020101600702010304008000")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ldap_answers(port, timeout=1.0):
    """True if the LDAP server on port answers a bind request."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(BIND_REQUEST)
            return b"\x61" in s.recv(64)
    except OSError:
        return False


def make_cert(directory, name):
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Slapd:
    """A slapd with its own database, config and log in `self.dir`."""

    def __init__(self, directory, tls=None, loglevel="256"):
        self.dir = str(directory)
        os.makedirs(os.path.join(self.dir, "db"))
        self.port = free_port()
        self.uri = "ldap://127.0.0.1:%d" % self.port
        self.ldaps_port = free_port() if tls else None
        self.ldaps_uri = "ldaps://127.0.0.1:%d" % self.ldaps_port if tls else None
        self.ldapi_path = os.path.join(self.dir, "ldapi")
        self.ldapi_uri = "ldapi://" + self.ldapi_path.replace("/", "%2F")
        self.loglevel = loglevel
        self.log = os.path.join(self.dir, "slapd.log")
        self.conf = os.path.join(self.dir, "slapd.conf")
        tls_lines = ""
        if tls:
            # simple binds need TLS: a plain connection cannot bind at all
            tls_lines = ("TLSCertificateFile %s\nTLSCertificateKeyFile %s\n"
                         "security simple_bind=1\n" % tls)
        with open(os.path.join(LDAPDIR, "slapd.conf.in")) as f:
            text = f.read().replace("@DIR@", self.dir).replace("@TLS@", tls_lines)
        with open(self.conf, "w") as f:
            f.write(text)
        subprocess.run([SLAPADD, "-q", "-f", self.conf, "-l",
                        os.path.join(LDAPDIR, "directory.ldif")],
                       check=True, capture_output=True)
        self.proc = None
        self.frozen = False

    def start(self):
        urls = "%s/ %s/" % (self.uri, self.ldapi_uri) + \
            (" " + self.ldaps_uri + "/" if self.ldaps_uri else "")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([SLAPD, "-d", self.loglevel, "-h", urls,
                                          "-f", self.conf],
                                         stdout=logf, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("slapd exited:\n" + self.log_text())
            return ldap_answers(self.port)
        wait_until(ready, 20, "slapd on port %d" % self.port)
        return self

    def log_text(self):
        with open(self.log, "r", errors="replace") as f:
            return f.read()

    def filters(self):
        return re.findall(r' filter="(.*)"$', self.log_text(), re.M)

    def binds(self):
        """DNs bound as, bar the anonymous binds of ldap_answers()."""
        return [dn for dn in re.findall(r' BIND dn="(.*)" method=', self.log_text(), re.M)
                if dn != ""]

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()        # SIGKILL also ends a stopped process
            self.proc.wait()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    return {"server": make_cert(d, "server"), "other": make_cert(d, "other")}


@pytest.fixture
def slapd_factory(tmp_path):
    started = []

    def make(start=True, **kw):
        s = Slapd(tmp_path / ("slapd%d" % len(started)), **kw)
        started.append(s)
        return s.start() if start else s
    yield make
    for s in started:
        s.kill()


@pytest.fixture
def slapd(slapd_factory):
    return slapd_factory()


def ldap_auth(uris, **keys):
    d = {"type": "ldap", "uris": uris, "bind-dn": SERVICE_DN, "bind-password": SERVICE_PW,
         "base": BASE, "workers": "4", "timeout": "2s"}
    d.update(keys)
    return d


def concurrently(fn, n):
    """Runs fn(i) in n threads; returns their results in order."""
    out = [None] * n
    errors = []

    def run(i):
        try:
            out[i] = fn(i)
        except Exception as e:     # reported below, in the test's thread
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert not errors, errors
    return out


def timed_auth(a, user, password, timeout=30):
    c = a.client()
    try:
        t0 = time.monotonic()
        r = c.auth(user, password, timeout=timeout)
        return r, time.monotonic() - t0
    finally:
        c.close()


# ---- answers -------------------------------------------------------------

def test_ok_fields_wrong_password_unknown_user(slapd, authd_factory, tmp_path):
    pw = tmp_path / "local-users"
    pw.write_text("zoe:{PLAIN}zoe-pw:3001:3001::/home/zoe::\n"
                  "alice:{PLAIN}other-pw:3002:3002::/home/alice2::\n")
    os.chmod(pw, 0o600)
    a = authd_factory([
        ("dir", ldap_auth(slapd.uri, attributes="uid=uidNumber, gid=gidNumber, "
                          "home=homeDirectory, maildrop=description",
                          **{"default-maildrop": "maildir:%h/Maildir"})),
        ("local", {"type": "passwd-file", "path": str(pw)})])
    c = a.client()
    r = c.auth("alice", "alice-pw")
    assert r.cmd == "OK", r
    assert (r.kv["uid"], r.kv["gid"], r.kv["home"], r.kv["maildrop"]) == \
        ("1001", "1001", "/home/alice", "maildir:/var/mail/alice")
    assert r.kv["authenticator"] == "dir"
    # bob has no description: the default applies
    r = c.auth("bob", "bob-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1002" and r.kv["maildrop"] == "maildir:%h/Maildir"
    # a wrong password ends the chain (the local alice is not asked)
    assert c.auth("alice", "other-pw").cmd == "FAIL"
    assert c.auth("alice", "alice-pw ").cmd == "FAIL"
    # unknown in the directory: NOUSER, so the next authenticator answers
    r = c.auth("zoe", "zoe-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "local"
    assert c.auth("nobody", "x").cmd == "FAIL"
    # searched as the service, bound as the user found
    assert "uid=alice,ou=people,dc=example,dc=org" in slapd.binds()
    assert SERVICE_DN in slapd.binds()
    assert "(&(objectClass=posixAccount)(uid=zoe))" in slapd.filters()
    log = a.log_text()
    assert "alice-pw" not in log and "authd-secret" not in log and "other-pw" not in log


def test_empty_password_never_reaches_the_directory(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri))])
    c = a.client()
    assert c.auth("alice", "").cmd == "FAIL"
    assert c.auth("alice", "alice-pw").cmd == "OK"
    # one search and one bind as alice: the empty password sent nothing
    assert slapd.filters().count("(&(objectClass=posixAccount)(uid=alice))") == 1
    assert slapd.binds().count("uid=alice,ou=people,dc=example,dc=org") == 1


def test_bind_password_file_and_uris_in_order(slapd, authd_factory, tmp_path):
    secret = tmp_path / "bind-pw"
    secret.write_text(SERVICE_PW + "\n")
    os.chmod(secret, 0o600)
    dead = free_port()
    keys = ldap_auth("ldap://127.0.0.1:%d, %s" % (dead, slapd.uri),
                     **{"bind-password-file": str(secret)})
    del keys["bind-password"]
    a = authd_factory([("dir", keys)])
    r = a.client().auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1001", r
    log = a.log_text()
    assert "cannot connect to ldap://127.0.0.1:%d" % dead in log
    assert SERVICE_PW not in log


def test_ldapi(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.ldapi_uri))])
    c = a.client()
    r = c.auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1001", r
    assert c.auth("alice", "wrong").cmd == "FAIL"
    assert "connection to %s open" % slapd.ldapi_uri in a.log_text()


def test_wrong_service_password_is_tempfail(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, **{"bind-password": "wrong-secret"}))])
    r = a.client().auth("alice", "alice-pw")
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "unavailable", r
    log = a.log_text()
    assert "refused the service bind as %s" % SERVICE_DN in log
    assert "wrong-secret" not in log


# ---- filters ---------------------------------------------------------------

@pytest.mark.parametrize("user,escaped", [
    ("*", r"\2A"),
    ("ali*", r"ali\2A"),
    ("alice)(uid=*", r"alice\29\28uid=\2A"),
    ("a)(|(uid=*", r"a\29\28|\28uid=\2A"),
    ("(uid=alice)", r"\28uid=alice\29"),
    ("alice\\", r"alice\5C"),
    ("x%u%n%d", "x%u%n%d"),
])
def test_filter_injection_is_escaped(slapd, authd_factory, user, escaped):
    # Unescaped, most of these would find alice alone and let her
    # password in under another name.
    a = authd_factory([("dir", ldap_auth(slapd.uri))])
    r = a.client().auth(user, "alice-pw")
    assert r.cmd == "FAIL", r
    assert slapd.filters() == ["(&(objectClass=posixAccount)(uid=%s))" % escaped]
    assert "uid=alice,ou=people,dc=example,dc=org" not in slapd.binds()


def test_non_ascii_user(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri))])
    c = a.client()
    r = c.auth("jörg", "jörg-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1009" and r.kv["user"] == "jörg", r
    assert c.auth("jörg", "joerg-pw").cmd == "FAIL"
    assert c.auth("jorg", "jörg-pw").cmd == "FAIL"
    assert r"(&(objectClass=posixAccount)(uid=j\C3\B6rg))" in slapd.filters()


def test_local_part_and_domain(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(
        slapd.uri, filter="(&(objectClass=posixAccount)(uid=%n)(mail=%n@%d))"))])
    c = a.client()
    r = c.auth("alice@example.org", "alice-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1001", r
    assert c.auth("alice@other.org", "alice-pw").cmd == "FAIL"
    assert c.auth("alice", "alice-pw").cmd == "FAIL"
    assert c.auth("*@example.org", "alice-pw").cmd == "FAIL"
    assert slapd.filters() == [
        "(&(objectClass=posixAccount)(uid=alice)(mail=alice@example.org))",
        "(&(objectClass=posixAccount)(uid=alice)(mail=alice@other.org))",
        "(&(objectClass=posixAccount)(uid=alice)(mail=alice@))",
        r"(&(objectClass=posixAccount)(uid=\2A)(mail=\2A@example.org))"]


def test_ambiguous_match_fails(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri))])
    r = a.client().auth("twin", "twin-pw")
    assert r.cmd == "FAIL", r
    assert "user twin: ambiguous" in a.log_text()
    assert not any("twin" in dn for dn in slapd.binds())
    a.stop()
    # the same password with a filter that finds one of them
    b = authd_factory([("dir", ldap_auth(slapd.uri, base="ou=contractors," + BASE))])
    r = b.client().auth("twin", "twin-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1008", r


def test_scope_one(slapd, authd_factory):
    a = authd_factory([
        ("one", ldap_auth(slapd.uri, base=BASE, scope="one")),
        ("people", ldap_auth(slapd.uri, base="ou=people," + BASE, scope="one"))])
    c = a.client()
    # the users are two levels below BASE: "one" does not see them
    r = c.auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "people", r


# ---- disabled accounts, compare mode, bad values ---------------------------

def test_disabled_account_bind_mode(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri))])
    c = a.client()
    assert c.auth("dave", "dave-pw").cmd == "FAIL"
    assert "user dave refused: account locked (password policy)" in a.log_text()
    assert c.auth("carol", "carol-pw").cmd == "OK"     # {CRYPT} in bind mode


def test_compare_mode(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, mode="compare"))])
    c = a.client()
    r = c.auth("carol", "carol-pw")
    assert r.cmd == "OK" and (r.kv["uid"], r.kv["home"]) == ("1003", "/home/carol"), r
    assert c.auth("carol", "carol-pw2").cmd == "FAIL"
    assert c.auth("nobody", "carol-pw").cmd == "FAIL"
    # a locked account: FAIL, and why is logged only for the right password
    assert c.auth("dave", "wrong").cmd == "FAIL"
    assert "user dave refused" not in a.log_text()
    assert c.auth("dave", "dave-pw").cmd == "FAIL"
    assert "user dave refused: account locked (pwdAccountLockedTime is set)" in a.log_text()
    # {SSHA} from slappasswd (OpenLDAP's tool), checked like a passwd-file hash
    assert c.auth("erin", "erin-pw").cmd == "OK"
    assert c.auth("erin", "erin-pw!").cmd == "FAIL"
    assert "no usable password hash" not in a.log_text()
    # nothing but the service ever bound: passwords were checked by authd
    assert set(slapd.binds()) == {SERVICE_DN}
    assert "carol-pw" not in a.log_text() and "$6$" not in a.log_text()


def test_unusable_attribute_value_is_tempfail(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri))])
    c = a.client()
    r = c.auth("frank", "frank-pw")
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "internal", r
    assert "user frank: unusable value of uidNumber" in a.log_text()
    assert c.auth("frank", "wrong").cmd == "FAIL"


def test_config_errors_stop_startup(slapd, tmp_path):
    conf = tmp_path / "bad.conf"
    common = ("[authd]\nsocket = %s/s\nmaster-socket = %s/m\n[pop3d]\nlisten = 127.0.0.1:1\n"
              "auth-socket = /x\nmaster-auth-socket = /y\n[authenticator dir]\ntype = ldap\n"
              "base = %s\n" % (tmp_path, tmp_path, BASE))
    for keys, expect in [
            ("uris = http://x/\n", "uris"),
            ("uris = %s\nfilter = (uid=%%x)\n" % slapd.uri, "filter"),
            ("uris = %s\nbind-dn = %s\n" % (slapd.uri, SERVICE_DN), "go together"),
            ("uris = %s\nca-file = %s/none.pem\n" % (slapd.uri, tmp_path), "ca-file"),
            ("uris = %s\nbind-dn = x\nbind-password-file = %s/none\n" % (slapd.uri, tmp_path),
             "bind-password-file"),
            ("uris = %s\nstarttls = yes\nca-file = %s\n" % (slapd.uri, tmp_path),
             "cannot set up TLS")]:
        conf.write_text(common + keys)
        r = subprocess.run([os.path.join(BUILD, "authd"), "-f", "-c", str(conf)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and expect in r.stderr, (keys, r.stderr)


# ---- TLS -------------------------------------------------------------------

def test_starttls_with_ca_file(slapd_factory, authd_factory, certs):
    s = slapd_factory(tls=certs["server"])
    a = authd_factory([
        ("tls", ldap_auth(s.uri, starttls="yes", **{"ca-file": certs["server"][0]}))])
    r = a.client().auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1001", r
    assert "EXT oid=%s" % STARTTLS_OID in s.log_text()


def test_tls_required_by_the_directory(slapd_factory, authd_factory, certs):
    # slapd refuses simple binds without TLS: proof that the other TLS
    # tests bind over TLS, and a clean TEMPFAIL when it is missing.
    s = slapd_factory(tls=certs["server"])
    a = authd_factory([("plain", ldap_auth(s.uri))])
    r = a.client().auth("alice", "alice-pw")
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "unavailable", r
    assert "refused the service bind" in a.log_text()


def test_ldaps_with_ca_file(slapd_factory, authd_factory, certs):
    s = slapd_factory(tls=certs["server"])
    a = authd_factory([("tls", ldap_auth(s.ldaps_uri, **{"ca-file": certs["server"][0]}))])
    c = a.client()
    r = c.auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["uid"] == "1001", r
    assert c.auth("alice", "bad").cmd == "FAIL"


@pytest.mark.parametrize("starttls", [False, True])
def test_tls_untrusted_certificate(slapd_factory, authd_factory, certs, starttls):
    s = slapd_factory(tls=certs["server"])
    uri = s.uri if starttls else s.ldaps_uri
    a = authd_factory([("tls", ldap_auth(uri, starttls="yes" if starttls else "no",
                                         **{"ca-file": certs["other"][0]}))])
    r = a.client().auth("alice", "alice-pw")
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "unavailable", r
    assert "%s: TLS handshake failed" % uri in a.log_text()
    assert "alice" not in " ".join(s.binds())


def test_ldaps_handshake_bounded_by_network_timeout(slapd_factory, authd_factory, certs):
    s = slapd_factory(tls=certs["server"])
    a = authd_factory([("tls", ldap_auth(s.ldaps_uri, timeout="3s",
                                         **{"ca-file": certs["server"][0],
                                            "network-timeout": "500ms"}))])
    # frozen, the kernel still accepts the TCP connection: only the TLS
    # handshake can hang, and network-timeout must bound it
    s.freeze()
    r, dt = timed_auth(a, "alice", "alice-pw")
    assert r.cmd == "TEMPFAIL", r
    assert 0.4 < dt < 0.5 + SLACK + 0.5, dt
    s.thaw()
    wait_until(lambda: timed_auth(a, "alice", "alice-pw")[0].cmd == "OK", 20,
               "recovery after SIGCONT", interval=0.05)


# ---- failures and recovery -------------------------------------------------

def warm_up(a, n=16):
    """Logs in from several connections at once, so that every worker
    opens its connections."""
    rs = concurrently(lambda i: timed_auth(a, "user%02d" % (i % 20), "user%02d-pw" % (i % 20))[0],
                      n)
    assert all(r.cmd == "OK" for r in rs), rs


def test_slapd_stopped_tempfail_within_timeout(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="2s"))])
    warm_up(a)
    slapd.stop()
    for i in range(6):
        r, dt = timed_auth(a, "alice", "alice-pw")
        assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "unavailable", r
        assert dt < 1.0, dt         # refused connections are quick: no timeout
    # a worker with a connection notices it is gone, one without finds
    # nobody listening
    assert "connection lost" in a.log_text() or "cannot connect to" in a.log_text()
    assert a.proc.poll() is None


def test_slapd_stopped_stale_answers_from_cache(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="1s"))],
                      cache={"positive-ttl": "0s", "stale-ttl": "1h"})
    c = a.client()
    assert c.auth("alice", "alice-pw").cmd == "OK"
    slapd.stop()
    t0 = time.monotonic()
    r = c.auth("alice", "alice-pw", timeout=10)
    assert r.cmd == "OK" and r.kv["uid"] == "1001", r
    assert time.monotonic() - t0 < 1.0 + SLACK
    assert "stale-if-error" in a.log_text()
    # nobody else is let in: a user never seen, a wrong password
    assert c.auth("bob", "bob-pw", timeout=10).cmd == "TEMPFAIL"
    assert c.auth("alice", "nope", timeout=10).cmd == "TEMPFAIL"


def test_slapd_frozen_timeouts_then_recovery(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="1s",
                                         **{"network-timeout": "500ms"}))])
    warm_up(a)
    pid = a.proc.pid
    slapd.freeze()
    # one request per worker, at once: each waits out its own deadline
    results = concurrently(lambda i: timed_auth(a, "user%02d" % i, "user%02d-pw" % i), 4)
    for r, dt in results:
        assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "timeout", r
        assert 0.95 <= dt < 1.0 + SLACK, dt
    # more while frozen: never later than the timeout (reconnections are
    # bounded too, and back off in between), and never "overloaded",
    # which would mean workers stuck past their deadlines
    for i in range(5):
        r, dt = timed_auth(a, "alice", "alice-pw")
        assert r.cmd == "TEMPFAIL" and r.kv["reason"] in ("timeout", "unavailable"), r
        assert dt < 1.0 + SLACK, dt
    assert "no answer before the deadline; dropping it" in a.log_text()
    slapd.thaw()
    # every worker comes back, without restarting authd

    def all_ok():
        rs = concurrently(lambda i: timed_auth(a, "user%02d" % i, "user%02d-pw" % i)[0], 8)
        return all(r.cmd == "OK" for r in rs)
    wait_until(all_ok, 30, "recovery after SIGCONT", interval=0.1)
    assert a.proc.poll() is None and a.proc.pid == pid


def test_slapd_restarted_on_same_port(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="2s"))])
    warm_up(a)
    slapd.stop()
    slapd.start()
    # the old connections are closed; each worker notices on its next
    # request and reconnects within that request: no TEMPFAIL at all
    rs = concurrently(lambda i: timed_auth(a, "user%02d" % i, "user%02d-pw" % i)[0], 12)
    assert all(r.cmd == "OK" for r in rs), rs
    assert re.search(r"connection lost: .*; reconnecting", a.log_text())


def test_slapd_down_for_a_while_then_back(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="1s"))])
    warm_up(a)
    slapd.stop()
    # failures while it is down start the back-off
    for i in range(10):
        assert timed_auth(a, "alice", "alice-pw")[0].cmd == "TEMPFAIL"
    slapd.start()
    wait_until(lambda: timed_auth(a, "alice", "alice-pw")[0].cmd == "OK", 20,
               "recovery after restart", interval=0.05)
    assert a.proc.poll() is None


def test_reload_does_not_wait_for_the_directory(slapd, authd_factory):
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="3s",
                                         **{"network-timeout": "2s"}))])
    assert timed_auth(a, "alice", "alice-pw")[0].cmd == "OK"
    slapd.freeze()
    t0 = time.monotonic()
    os.kill(a.proc.pid, signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in a.log_text(), 10, "reload")
    # the new authenticator was set up on the event loop without a
    # connection attempt (its first worker makes one, bounded, meanwhile)
    assert time.monotonic() - t0 < 1.0
    r, dt = timed_auth(a, "alice", "alice-pw")
    assert r.cmd == "TEMPFAIL" and dt < 3.0 + SLACK, (r, dt)
    slapd.thaw()
    wait_until(lambda: timed_auth(a, "alice", "alice-pw")[0].cmd == "OK", 20,
               "the new generation logs in", interval=0.05)
    wait_until(lambda: "generation with 1 authenticators stopped" in a.log_text(), 20,
               "old generation stopped")


def test_reload_while_the_first_connection_waits(slapd, authd_factory):
    # The first worker connects at start (worker_init), bounded by
    # network-timeout.  A reload meanwhile retires that generation, which
    # used to join its workers on the event loop at once, so authd stopped
    # answering anyone until the connection attempt timed out.
    slapd.freeze()
    a = authd_factory([("dir", ldap_auth(slapd.uri, timeout="5s",
                                         **{"network-timeout": "4s"}))])
    wait_until(lambda: "authenticator dir: type ldap" in a.log_text(), 10, "start")
    for n in (1, 2):        # the second retires a generation still connecting too
        t0 = time.monotonic()
        os.kill(a.proc.pid, signal.SIGHUP)
        wait_until(lambda: a.log_text().count("configuration reloaded") == n, 10, "reload")
        assert time.monotonic() - t0 < 1.0
    slapd.thaw()
    wait_until(lambda: timed_auth(a, "alice", "alice-pw")[0].cmd == "OK", 20,
               "the newest generation logs in", interval=0.05)
    wait_until(lambda: a.log_text().count("generation with 1 authenticators stopped") == 2,
               20, "both older generations stopped once their first connection ended")
    assert a.proc.poll() is None


# ---- throughput ------------------------------------------------------------

def run_logins(a, total, conns=4, window=32):
    """total logins of user00..user19 over conns pipelined connections.
    Returns (seconds, results by kind)."""
    per = total // conns
    counts = {}
    lock = threading.Lock()

    def one(ci):
        c = a.client(timeout=60)
        sent = got = 0
        mine = {}
        while got < per:
            while sent < per and sent - got < window:
                n = (ci * per + sent) % 20
                mine[c.send_auth("user%02d" % n, "user%02d-pw" % n)] = n
                sent += 1
            r = c.read_reply(timeout=60)
            assert r.kv.get("user", "user%02d" % mine[r.id]) == "user%02d" % mine.pop(r.id)
            with lock:
                counts[r.cmd] = counts.get(r.cmd, 0) + 1
            got += 1
        c.close()
    t0 = time.monotonic()
    concurrently(one, conns)
    return time.monotonic() - t0, counts


def test_throughput_with_and_without_cache(slapd_factory, authd_factory, capsys):
    total = int(os.environ.get("LDAP_BENCH_LOGINS", "2000"))
    s = slapd_factory(loglevel="0")
    # 4 x 32 requests at once without an address: one source, over the
    # default per-source-limit
    keys = {"timeout": "10s", "per-source-limit": "128",
            # throughput, not admission: the queue may hold all 128
            "queue-wait-factor": "0"}
    a = authd_factory([("dir", ldap_auth(s.uri, **keys))])
    cold_s, cold = run_logins(a, total)
    a.stop()
    cold_log = a.log_text()     # both write to the same file
    b = authd_factory([("dir", ldap_auth(s.uri, **keys))], cache={})
    warm_s, warm = run_logins(b, total)
    assert cold == {"OK": total} and warm == {"OK": total}, (cold, warm)
    with capsys.disabled():
        print("\nldap logins: %d over 4 connections, 20 users, 4 workers\n"
              "  no cache: %.2fs, %.0f/s\n  cache:    %.2fs, %.0f/s\n  ratio %.1fx"
              % (total, cold_s, total / cold_s, warm_s, total / warm_s, cold_s / warm_s))
    # without the cache every login searched the directory; with it, each
    # user about once (refresh-ahead may add a few)
    searched = re.compile(r"authenticator dir: user user\d\d is uid=")
    assert len(searched.findall(cold_log)) == total
    assert len(searched.findall(b.log_text()[len(cold_log):])) < total // 10


# ---- a hostile directory ---------------------------------------------------

class HostileDirectory:
    """A "directory" on 127.0.0.1 that answers every connection's first
    request with the head of a message announcing `length` bytes, then
    sends nothing more (and keeps the connection open)."""

    def __init__(self, length):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.head = b"\x30\x84" + length.to_bytes(4, "big")
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            c.settimeout(5)
            try:
                if c.recv(4096):
                    c.sendall(self.head)
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_huge_message_from_the_directory_is_refused_at_once(authd_factory):
    """A message whose length field says 2.6 GB: liblber would allocate
    that much and wait for it (until the timeout); authd limits what it
    takes in (LDAP_MAX_INCOMING), so the connection fails at once."""
    d = HostileDirectory(0x9b123456)
    try:
        a = authd_factory([("dir", ldap_auth("ldap://127.0.0.1:%d/" % d.port, timeout="3s"))])
        r, dt = timed_auth(a, "alice", "alice-pw")
        assert r.cmd == "TEMPFAIL" and r.kv.get("reason") != "timeout", r
        assert dt < 2, dt
        assert d.conns, "authd never connected"
    finally:
        d.close()
