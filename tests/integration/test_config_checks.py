"""`authd -t` and `pop3d -t` refuse exactly the files the daemons refuse at
start: the same broken files go to both, and the answers must agree."""

import os
import subprocess

import pytest

from conftest import BUILD, sanitizer_env
from pop3lib import IS_ROOT, free_port


def config(tmp_path, authd="", pop3d="", auth=None, listen=None):
    d = str(tmp_path)
    auth = auth if auth is not None else (
        "[authenticator files]\ntype = passwd-file\npath = %s/users\n" % d)
    listen = listen if listen is not None else "127.0.0.1:%d" % free_port()
    text = ("[authd]\nsocket = %s/auth.sock\nmaster-socket = %s/master.sock\n%s\n"
            "[pop3d]\nlisten = %s\nauth-socket = %s/auth.sock\n"
            "master-auth-socket = %s/master.sock\nlogin-user = nobody\nlogin-chroot = %s\n%s\n%s"
            % (d, d, authd.format(d=d), listen, d, d, d, pop3d.format(d=d), auth.format(d=d)))
    if "login-user" in pop3d:      # the test's own instead of nobody
        text = text.replace("login-user = nobody\n", "", 1)
    return text.encode()


def ldap(keys):
    return dict(auth=("[authenticator dir]\ntype = ldap\nbase = dc=example,dc=org\n" +
                ("" if "uris" in keys else "uris = ldap://127.0.0.1:1/\n") + keys))


# Files both daemons refuse, at -t and at start alike: each daemon loads
# and checks the whole file (config.c), so a [pop3d] mistake stops authd
# and an LDAP one stops pop3d.
BROKEN = {
    # LDAP URIs that libldap refuses when the authenticator starts
    "ldap-http-uri": dict(auth="[authenticator dir]\ntype = ldap\nuris = http://x\n"
                               "base = dc=example,dc=org\n"),
    "ldap-no-scheme": dict(auth="[authenticator dir]\ntype = ldap\nuris = 127.0.0.1\n"
                                "base = dc=example,dc=org\n"),
    # a relative path would be looked up from "/", where the daemons run
    "relative-passwd-file": dict(auth="[authenticator files]\ntype = passwd-file\n"
                                      "path = users\n"),
    "relative-socket": dict(authd="stats-socket = stats.sock\n"),
    # [pop3d] keys pop3d used to check only at its own start
    "listen-bad-address": dict(listen="localhost:1x"),
    "listen-tls-bad-address": dict(pop3d="listen-tls = localhost:pop3s\n"),
    "listen-tls-too-many": dict(pop3d="listen-tls = %s\n" % ", ".join(
        "127.0.0.1:%d" % (20000 + i) for i in range(17))),
    "login-delay-word": dict(pop3d="login-delay = soon\n"),
    "login-delay-negative": dict(pop3d="login-delay = -1\n"),
    "expire-word": dict(pop3d="expire = later\n"),
    "expire-lowercase-never": dict(pop3d="expire = never\n"),
    "greeting-too-long": dict(pop3d="greeting = %s\n" % ("g" * 201)),
    "tls-min-version-old": dict(pop3d="tls-min-version = TLSv1.1\n"),
    "require-tls-without-tls": dict(pop3d="require-tls = yes\n"),
    "starttls-without-cert": dict(pop3d="starttls = yes\n"),
    "tls-keys-unpaired": dict(pop3d="starttls = yes\ntls-cert-file = /a.pem, /b.pem\n"
                                    "tls-key-file = /a.key\n"),
    "tls-cert-empty-entry": dict(pop3d="starttls = yes\ntls-cert-file = /a.pem,,/b.pem\n"
                                       "tls-key-file = /a.key,/b.key\n"),
    "maildrop-type": dict(pop3d="maildrop = mh:/var/mail/%u\n"),
    "maildrop-relative": dict(pop3d="maildrop = maildir:~/Maildir\n"),
    "maildrop-unknown-variable": dict(pop3d="maildrop = /var/mail/%x\n"),
    "default-maildrop-relative": dict(auth="[authenticator files]\ntype = passwd-file\n"
                                           "path = {d}/users\ndefault-maildrop = Maildir\n"),
    "require-tls-exempt-bad": dict(pop3d="require-tls-exempt = 10.1.2.3/8\n"),
    "require-tls-exempt-word": dict(pop3d="require-tls-exempt = intranet\n"),
    "tls-cert-nine": dict(pop3d="starttls = yes\ntls-cert-file = %s\ntls-key-file = %s\n" % (
        ",".join("/c%d" % i for i in range(9)), ",".join("/k%d" % i for i in range(9)))),
    # LDAP keys authd used to check again, with other rules, at its start
    "ldap-attributes-unknown-field": ldap("attributes = shell=loginShell\n"),
    "ldap-attributes-repeated": ldap("attributes = uid=uidNumber, uid=uid\n"),
    "ldap-attributes-five": ldap("attributes = uid=a, gid=b, home=c, maildrop=d, uid=e\n"),
    "ldap-attributes-bad-name": ldap("attributes = home=home!dir\n"),
    "ldap-attributes-no-value": ldap("attributes = home=\n"),
    "ldap-filter-no-user": ldap("filter = (uid=alice)\n"),
    "ldap-filter-bad-escape": ldap("filter = (uid=%u%x)\n"),
    "ldap-filter-trailing-percent": ldap("filter = (uid=%u)%\n"),
    "ldap-scope": ldap("scope = all\n"),
    "ldap-mode": ldap("mode = guess\n"),
    "ldap-bind-dn-alone": ldap("bind-dn = cn=x\n"),
    "ldap-password-alone": ldap("bind-password = x\n"),
    "ldap-two-passwords": ldap("bind-dn = cn=x\nbind-password = x\n"
                               "bind-password-file = /etc/hostname\n"),
    "ldap-ca-file-missing": ldap("ca-file = /nonexistent/ca.pem\n"),
    "ldap-nine-uris": ldap("uris = %s\n" % ", ".join(
        "ldap://127.0.0.1:%d/" % (1000 + i) for i in range(9))),
    # a chain per service: names as requests carry them, 16 at most
    "services-bad-name": dict(auth="[authenticator files]\ntype = passwd-file\n"
                                   "path = {d}/users\nservices = pop3, SMTP\n"),
    "services-empty": dict(auth="[authenticator files]\ntype = passwd-file\n"
                               "path = {d}/users\nservices =\n"),
    "services-comma": dict(auth="[authenticator files]\ntype = passwd-file\n"
                               "path = {d}/users\nservices = ,\n"),
    "services-seventeen": dict(auth="[authenticator files]\ntype = passwd-file\n"
                                    "path = {d}/users\nservices = %s\n" % " ".join(
                                        "s%d" % i for i in range(17))),
}

# Files only one daemon can refuse: the check needs its libraries (libldap,
# OpenSSL) or its own keys on the running system.  That daemon's -t and
# its start agree.
BROKEN_ONE = {
    "ldap-url-unparsable": ("authd", ldap("uris = ldap://[::1/\n")),
    "ldap-password-file-missing": ("authd", ldap("bind-dn = cn=x\n"
                                                  "bind-password-file = /nonexistent/pw\n")),
    "ldap-ca-file-a-directory": ("authd", ldap("starttls = yes\nca-file = {d}\n")),
    "passwd-file-missing": ("authd", dict(auth="[authenticator files]\ntype = passwd-file\n"
                                                "path = /nonexistent/users\n")),
    "authd-stats-group-unknown": ("authd", dict(authd="stats-socket = {d}/st.sock\n"
                                                      "stats-group = no-such-group-x\n")),
    "authd-log-file-unopenable": ("authd", dict(authd="log-target = file\n"
                                                      "log-file = /nonexistent/authd.log\n")),
    "pop3d-log-file-unopenable": ("pop3d", dict(pop3d="log-target = file\n"
                                                      "log-file = /nonexistent/pop3d.log\n")),
    "pop3d-stats-group-unknown": ("pop3d", dict(pop3d="stats-socket = {d}/pst.sock\n"
                                                      "stats-group = no-such-group-x\n")),
    "tls-files-missing": ("pop3d", dict(pop3d="starttls = yes\n"
                                              "tls-cert-file = /nonexistent/c.pem\n"
                                              "tls-key-file = /nonexistent/k.pem\n")),
}
ROOT_ONLY = {
    "login-user-unknown": ("pop3d", dict(pop3d="login-user = no-such-user-x\n")),
    "authd-user-unknown": ("authd", dict(authd="user = no-such-user-x\n")),
}


@pytest.mark.parametrize("daemon", ["authd", "pop3d"])
def test_base_file_passes(tmp_path, daemon):
    """What the broken files below start from is fine: each refusal is for
    what was broken in it."""
    (tmp_path / "users").write_text("")
    path = tmp_path / "good.conf"
    path.write_bytes(config(tmp_path))
    path.chmod(0o600)
    t = run([os.path.join(BUILD, daemon), "-t", "-c", str(path)])
    assert t.returncode == 0, t.stderr


def run(args, timeout=20):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=sanitizer_env())
    except subprocess.TimeoutExpired:
        return None     # still running: it started


def check_and_start_agree(tmp_path, daemon, keys):
    (tmp_path / "users").write_text("")
    path = tmp_path / "broken.conf"
    path.write_bytes(config(tmp_path, **keys))
    path.chmod(0o600)
    t = run([os.path.join(BUILD, daemon), "-t", "-c", str(path)])
    assert t is not None and t.returncode != 0, (keys, t and t.stdout)
    start = run([os.path.join(BUILD, daemon), "-f", "-c", str(path)], timeout=5)
    assert start is not None and start.returncode != 0, "%s started with %s" % (daemon, keys)
    # both name the same problem
    key = t.stderr.strip().splitlines()[-1]
    assert key.split(":")[-1].strip() in start.stderr, (t.stderr, start.stderr)


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("daemon", ["authd", "pop3d"])
def test_check_refuses_what_start_refuses(tmp_path, name, daemon):
    check_and_start_agree(tmp_path, daemon, BROKEN[name])


@pytest.mark.parametrize("name", sorted(BROKEN_ONE))
def test_daemon_specific_checks_agree(tmp_path, name):
    daemon, keys = BROKEN_ONE[name]
    check_and_start_agree(tmp_path, daemon, keys)


@pytest.mark.skipif(not IS_ROOT, reason="users are looked up only by a daemon started as root")
@pytest.mark.parametrize("name", sorted(ROOT_ONLY))
def test_user_checks_agree(tmp_path, name):
    daemon, keys = ROOT_ONLY[name]
    check_and_start_agree(tmp_path, daemon, keys)


def test_nul_byte_named(tmp_path):
    text = config(tmp_path).replace(b"[pop3d]\n", b"[pop3d]\ngreeting = a\0b\n")
    path = tmp_path / "nul.conf"
    path.write_bytes(text)
    for daemon in ("authd", "pop3d"):
        r = run([os.path.join(BUILD, daemon), "-t", "-c", str(path)])
        assert r.returncode != 0
        assert "NUL byte" in r.stderr and "longer" not in r.stderr, r.stderr
