"""`authd -t` and `pop3d -t` refuse exactly the files the daemons refuse at
start: the same broken files go to both, and the answers must agree."""

import os
import subprocess

import pytest

from conftest import BUILD, sanitizer_env
from pop3lib import free_port


def config(tmp_path, authd="", pop3d="", auth=None):
    d = str(tmp_path)
    auth = auth if auth is not None else (
        "[authenticator files]\ntype = passwd-file\npath = %s/users\n" % d)
    text = ("[authd]\nsocket = %s/auth.sock\nmaster-socket = %s/master.sock\n%s\n"
            "[pop3d]\nlisten = 127.0.0.1:%d\nauth-socket = %s/auth.sock\n"
            "master-auth-socket = %s/master.sock\nlogin-user = nobody\nlogin-chroot = %s\n%s\n%s"
            % (d, d, authd, free_port(), d, d, d, pop3d, auth)).encode()
    return text


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


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("daemon", ["authd", "pop3d"])
def test_check_refuses_what_start_refuses(tmp_path, name, daemon):
    (tmp_path / "users").write_text("")
    path = tmp_path / "broken.conf"
    path.write_bytes(config(tmp_path, **BROKEN[name]))
    path.chmod(0o600)
    t = run([os.path.join(BUILD, daemon), "-t", "-c", str(path)])
    assert t is not None and t.returncode != 0, (name, t and t.stdout)
    start = run([os.path.join(BUILD, daemon), "-f", "-c", str(path)], timeout=5)
    assert start is not None and start.returncode != 0, "%s started with %s" % (daemon, name)
    # both name the same problem
    key = t.stderr.strip().splitlines()[-1]
    assert key.split(":")[-1].strip() in start.stderr, (t.stderr, start.stderr)


def test_nul_byte_named(tmp_path):
    text = config(tmp_path).replace(b"[pop3d]\n", b"[pop3d]\ngreeting = a\0b\n")
    path = tmp_path / "nul.conf"
    path.write_bytes(text)
    for daemon in ("authd", "pop3d"):
        r = run([os.path.join(BUILD, daemon), "-t", "-c", str(path)])
        assert r.returncode != 0
        assert "NUL byte" in r.stderr and "longer" not in r.stderr, r.stderr
