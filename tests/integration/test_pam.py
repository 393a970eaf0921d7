"""The PAM authenticator: pam_wrapper + pam_matrix (no root needed,
deterministic), a PAM module that hangs (pam_exec), and, when run as root,
the real pam_unix against a user the test creates and removes."""

import os
import subprocess
import time

import pytest

from authdlib import wait_until

pytestmark = pytest.mark.threaded

LIBDIR = "/usr/lib/x86_64-linux-gnu"
MATRIX = LIBDIR + "/pam_wrapper/pam_matrix.so"
WRAPPER = LIBDIR + "/libpam_wrapper.so"
PAM_EXEC = LIBDIR + "/security/pam_exec.so"
PAM_DENY = LIBDIR + "/security/pam_deny.so"


@pytest.fixture
def pamdir(tmp_path):
    svc = tmp_path / "svc"
    svc.mkdir()
    passdb = tmp_path / "passdb"
    passdb.write_text("alice:alice-pw:pop3\nbob:bob-pw:pop3\nhang1:x:pop3\n"
                      "carl:carl-pw:pop3deny\n")
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\ncase \"$PAM_USER\" in hang*) exec sleep 1000;; esac\nexit 0\n")
    hang.chmod(0o755)
    m = "%s passdb=%s" % (MATRIX, passdb)
    (svc / "pop3").write_text("auth requisite %s quiet %s\nauth required %s\naccount required %s\n"
                              % (PAM_EXEC, hang, m, m))
    (svc / "pop3deny").write_text("auth required %s\naccount required %s\n" % (m, PAM_DENY))
    (svc / "other").write_text("auth required %s\naccount required %s\n" % (PAM_DENY, PAM_DENY))
    # authd-pam-helper is never built with sanitizers (see authd/module.mk),
    # so pam_wrapper can be preloaded into it in every build.
    return "LD_PRELOAD=%s PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=%s" % (WRAPPER, svc)


def pam_auth(env, **keys):
    d = {"type": "pam", "service": "pop3", "workers": "2", "timeout": "1s",
         "environment": env, "default-uid": "5000", "default-gid": "5000",
         "default-home": "/srv/mail"}
    d.update(keys)
    return d


def test_pam_matrix_ok_fail(authd_factory, pamdir):
    a = authd_factory([("pam", pam_auth(pamdir))])
    c = a.client()
    r = c.auth("alice", "alice-pw")
    assert r.cmd == "OK" and r.kv["authenticator"] == "pam", r
    assert r.kv["uid"] == "5000" and r.kv["home"] == "/srv/mail"
    assert c.auth("alice", "wrong").cmd == "FAIL"
    assert c.auth("nosuch", "x").cmd == "FAIL"
    assert c.auth("bob", "bob-pw").cmd == "OK"
    assert "alice-pw" not in a.log_text()


def test_pam_account_refused_is_fail_with_reason(authd_factory, pamdir):
    a = authd_factory([("pam", pam_auth(pamdir, service="pop3deny"))])
    r = a.client().auth("carl", "carl-pw")
    assert r.cmd == "FAIL", r
    assert "user carl refused" in a.log_text()


def test_pam_module_hangs_helper_killed(authd_factory, pamdir):
    a = authd_factory([("pam", pam_auth(pamdir, workers="1"))])
    c = a.client()
    t0 = time.monotonic()
    r = c.auth("hang1", "x", timeout=10)
    assert r.cmd == "TEMPFAIL" and r.kv["reason"] == "timeout"
    assert time.monotonic() - t0 < 2.5
    # the helper (and the sleeping pam_exec child) are gone, the next
    # request gets a new helper and succeeds
    wait_until(lambda: c.auth("alice", "alice-pw", timeout=5).cmd == "OK", 10,
               "recovery", interval=0.05)
    wait_until(lambda: len([p for p, s in a.children() if s != "Z"]) <= 1, 10,
               "old helper gone")
    assert [s for _, s in a.children() if s == "Z"] == []


def test_pam_helper_recycled_after_max_requests(authd_factory, pamdir):
    a = authd_factory([("pam", pam_auth(pamdir, workers="1", **{"max-requests": "3"}))])
    c = a.client()
    pids = set()
    for _ in range(7):
        assert c.auth("alice", "alice-pw").cmd == "OK"
        pids.update(p for p, s in a.children() if s != "Z")
    assert len(pids) >= 3, pids


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real pam_unix and useradd")
def test_real_pam_unix(authd_factory, tmp_path):
    user = "authdtest%d" % os.getpid()
    service = "authd-test-%d" % os.getpid()
    pamfile = "/etc/pam.d/" + service
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", user],
                   check=True)
    try:
        subprocess.run(["chpasswd"], input="%s:Unix-Pw-1\n" % user, text=True, check=True)
        with open(pamfile, "w") as f:
            f.write("auth required pam_unix.so\naccount required pam_unix.so\n")
        a = authd_factory([("unix", {"type": "pam", "service": service, "workers": "1",
                                     "timeout": "5s"})])
        c = a.client()
        r = c.auth(user, "Unix-Pw-1", timeout=10)
        assert r.cmd == "OK", r
        import pwd
        assert r.kv["uid"] == str(pwd.getpwnam(user).pw_uid)
        assert c.auth(user, "nope", timeout=10).cmd == "FAIL"
        # an expired account fails, with its reason logged, and is not a TEMPFAIL
        subprocess.run(["chage", "-E", "0", user], check=True)
        assert c.auth(user, "Unix-Pw-1", timeout=10).cmd == "FAIL"
        assert "refused" in a.log_text()
    finally:
        subprocess.run(["userdel", user])
        if os.path.exists(pamfile):
            os.unlink(pamfile)
