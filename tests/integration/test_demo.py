"""scripts/demo, what `make run` starts: a real login against it, and, as
root, the separation of the front end's user from the mailbox owner's."""

import os
import poplib
import signal
import subprocess
import tempfile
import shutil

import pytest

from authdlib import wait_until
from conftest import BUILD, REPO
from pop3lib import IS_ROOT, free_port


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line for %d" % pid)


def procs_titled(prefix, sid):
    """pids of the processes of session sid whose title starts with prefix."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % d) as f:
                their_sid = int(f.read().rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            continue
        if title.startswith(prefix) and their_sid == sid:
            out.append(int(d))
    return out


@pytest.fixture
def demo():
    run = tempfile.mkdtemp(prefix="pop3d-demo-", dir="/tmp")
    os.chmod(run, 0o755)
    port, tls_port = free_port(), free_port()
    env = dict(os.environ, BUILD_DIR=BUILD, DEMO_RUN=run, DEMO_PORT=str(port),
               DEMO_TLS_PORT=str(tls_port))
    log = open(os.path.join(run, "demo.log"), "wb")
    proc = subprocess.Popen([os.path.join(REPO, "scripts", "demo")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def answers():
        try:
            p = poplib.POP3("127.0.0.1", port, timeout=2)
            p.quit()
            return True
        except OSError:
            assert proc.poll() is None, open(os.path.join(run, "demo.log")).read()
            return False
    try:
        wait_until(answers, 60, "the demo's pop3d")
        yield port, run, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(run, ignore_errors=True)


def test_demo_serves_its_user(demo):
    port, run, _ = demo
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    p.user("demo")
    p.pass_("demo-password")
    assert p.stat()[0] == 3
    assert b"Subject: Welcome to pop3d" in b"\n".join(p.retr(1)[1])
    p.quit()


@pytest.mark.skipif(not IS_ROOT, reason="only root drops privileges")
def test_demo_as_root_separates_front_end_and_mailbox_owner(demo):
    """A front end (which parses what clients send) must not run as the
    user of the sessions, or it could signal and trace them."""
    port, run, proc = demo
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    p.user("demo")
    p.pass_("demo-password")
    p.stat()
    # the session answering this client
    sessions = procs_titled("pop3d: session", proc.pid)
    fronts = procs_titled("pop3d: login", proc.pid)
    assert fronts and sessions, (fronts, sessions)
    front_uids = {proc_uid(pid) for pid in fronts}
    session_uids = {proc_uid(pid) for pid in sessions}
    p.quit()
    assert front_uids == {int(subprocess.check_output(["id", "-u", "nobody"]))}
    assert not front_uids & session_uids, (front_uids, session_uids)
    assert 0 not in session_uids
    st = os.stat(os.path.join(run, "home", "demo", "Maildir"))
    assert st.st_uid in session_uids
