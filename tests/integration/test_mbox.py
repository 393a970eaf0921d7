"""Issue 18: mbox maildrops (maildrop = mbox:SPOOL/%u), served by the real
authd and pop3d, read by real clients (poplib, fetchmail, mpop), delivered
to by a real MDA (procmail) while a session holds the spool, and read back
by a real MUA-side tool (GNU mailutils movemail).  The spool directory is
one the session can write to (a sticky 1777 directory), or, as root, one
like Debian's /var/mail (root:mail 2775) where the session, not in group
mail, needs liblockfile's setgid helper dotlockfile for its dot lock.
Never the real /var/mail."""

import grp
import os
import poplib
import random
import shutil
import signal
import subprocess
import time

import pytest

from authdlib import wait_until
from pop3lib import IS_ROOT, TEST_GID, TEST_UID
# the pop3d suite's fixtures and helpers
from test_pop3d import login, mailroot, process_gone, world  # noqa: F401

MAIL_GID = grp.getgrnam("mail").gr_gid


def need(prog):
    """The path of a program from a Debian package, or skip (fail under CI)."""
    path = shutil.which(prog) or next((p for p in ("/usr/bin/" + prog, "/usr/sbin/" + prog)
                                       if os.path.exists(p)), None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("%s is not installed (CI must have it: scripts/install-deps)" % prog)
        pytest.skip("%s is not installed (scripts/install-deps installs it)" % prog)
    return path


def frm(n):
    return b"From sender%d@example.org Mon Dec  7 04:%02d:00 2026\n" % (n, n % 60)


META = (b"Date: Mon, 7 Dec 2026 03:00:00 +0000\n"
        b"From: Mail System Internal Data <MAILER-DAEMON@host>\n"
        b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
        b"X-IMAP: 1765000000 0000000002\nStatus: RO\n\n"
        b"This text is part of the internal format of your mail folder.\n")


def awkward(big=20 * 1024 * 1024):
    """[(from_line, message, separator)]: every shape the issue names.  The
    first is c-client's metadata message, which POP3 does not see."""
    body = b"".join(b"%07d line of a big message ..........................\n" % i
                    for i in range(big // 60))
    return [
        (b"From MAILER-DAEMON Mon Dec  7 03:00:00 2026\n", META, b"\n"),
        (frm(1), b"From: a@example.org\nSubject: From lines\nStatus: RO\nX-Status: A\n"
                 b"X-UID: 7\n\nFrom the start of a line\n\nFrom here on, no date\n"
                 b">From quoted once\n>>From quoted twice\n.\n..two dots\n", b"\n"),
        (frm(2), b"", b"\n"),                                   # empty message
        (frm(3), b"Subject: crlf\r\n\r\nline one\r\nline two\r\n", b"\r\n"),
        (frm(4), b"Subject: big\n\n" + body, b"\n"),
        (frm(5), b"Subject: uidl\nX-UIDL: qpop-abc-123\n\nkept id\n", b"\n"),
        (frm(6), b"Subject: last\n\nno final newline", b""),
    ]


def spool_bytes(msgs):
    return b"".join(f + m + s for f, m, s in msgs)


def wire(m):
    """What RETR sends of m (unstuffed): CRLF line ends, a final CRLF."""
    out = m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def make_spool(mailroot, kind):  # noqa: F811
    """A spool directory: "writable" (1777, sticky) or "helper" (root:mail
    2775, as Debian's /var/mail: the session needs dotlockfile)."""
    spool = os.path.join(mailroot.path, "spool-" + kind)
    os.mkdir(spool)
    if kind == "helper":
        if not IS_ROOT:
            pytest.skip("a root:mail spool directory needs root to set up")
        need("dotlockfile")
        os.chown(spool, 0, MAIL_GID)
        os.chmod(spool, 0o2775)
    else:
        os.chmod(spool, 0o1777)
    return spool


def put_mbox(spool, user, data):
    p = os.path.join(spool, user)
    with open(p, "wb") as f:
        f.write(data)
    if IS_ROOT:
        os.chown(p, TEST_UID, MAIL_GID)
    os.chmod(p, 0o660)
    return p


@pytest.fixture(params=["writable", "helper"])
def mbox_world(request, world, mailroot):  # noqa: F811
    spool = make_spool(mailroot, request.param)

    def make(data, pop3d_keys=None):
        path = put_mbox(spool, "alice", data)
        keys = {"maildrop": "mbox:%s/%%u" % spool}
        keys.update(pop3d_keys or {})
        p = world(pop3d_keys=keys, users={"alice": []})
        p.mbox = path
        p.spool = spool
        p.kind = request.param
        return p
    return make


def test_poplib_awkward_spool_and_dele(mbox_world):
    msgs = awkward()
    p = mbox_world(spool_bytes(msgs))
    st = os.stat(p.mbox)
    visible = msgs[1:]
    c = login(p.port)
    # both locks are ours while the session lasts
    lock = p.mbox + ".lock"
    assert os.path.exists(lock)
    if IS_ROOT:
        assert os.stat(lock).st_uid == TEST_UID
    assert c.stat() == (len(visible), sum(len(wire(m)) for _, m, _ in visible))
    resp, listing, _ = c.list()
    assert [int(x.split()[1]) for x in listing] == [len(wire(m)) for _, m, _ in visible]
    resp, uidls, _ = c.uidl()
    ids = [x.split()[1] for x in uidls]
    assert len(set(ids)) == len(ids)
    assert ids[4] == b"qpop-abc-123"
    for i, (_, m, _) in enumerate(visible, 1):
        resp, lines, octets = c.retr(i)
        got = b"\r\n".join(lines) + b"\r\n" if lines else b""
        assert got == wire(m), i
    resp, lines, _ = c.top(1, 2)
    assert lines[-2:] == [b"From the start of a line", b""]
    c.dele(2)       # the empty one
    c.dele(4)       # the 20 MB one: the rewrite moves the rest down
    assert c.quit().startswith(b"+OK")
    p.wait_log(r"logout: user=alice .*reason=QUIT .*del=2/")
    kept = [msgs[0], msgs[1], msgs[3], msgs[5], msgs[6]]
    with open(p.mbox, "rb") as f:
        assert f.read() == spool_bytes(kept)
    after = os.stat(p.mbox)
    assert (after.st_ino, after.st_uid, after.st_gid, after.st_mode) == \
        (st.st_ino, st.st_uid, st.st_gid, st.st_mode)
    assert not os.path.exists(lock)
    # the ids of the rest are the same in the next session
    d = login(p.port)
    resp, uidls, _ = d.uidl()
    assert [x.split()[1] for x in uidls] == [ids[0], ids[2], ids[4], ids[5]]
    d.quit()


def test_in_use_while_another_session_holds_it(mbox_world):
    p = mbox_world(spool_bytes(awkward(big=1000)))
    c = login(p.port)
    d = poplib.POP3("127.0.0.1", p.port, timeout=30)
    d.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        d.pass_("alice-pw")
    assert b"[IN-USE]" in e.value.args[0]
    c.quit()
    d = login(p.port)
    assert d.stat()[0] == 6
    d.quit()


def test_not_an_mbox_and_missing(mbox_world):
    p = mbox_world(b"Subject: no From_ line\n\nhello\n")
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    c.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        c.pass_("alice-pw")
    assert b"[SYS/PERM]" in e.value.args[0]
    os.unlink(p.mbox)
    c = login(p.port)       # no spool file yet: an empty maildrop
    assert c.stat() == (0, 0)
    c.quit()
    assert not os.path.exists(p.mbox)


def test_fetchmail_downloads_awkward_spool(mbox_world, tmp_path):
    fetchmail = need("fetchmail")
    msgs = awkward()
    p = mbox_world(spool_bytes(msgs))
    out = tmp_path / "fetched"
    rc = tmp_path / "fetchmailrc"
    rc.write_text("poll 127.0.0.1 port %d proto pop3 auth password timeout 60\n"
                  "  user alice password alice-pw is root here sslproto ''\n"
                  "  mda \"/bin/sh -c 'cat >> %s; echo =====END===== >> %s'\"\n"
                  % (p.port, out, out))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run([fetchmail, "-f", str(rc), "--pidfile", str(tmp_path / "fm.pid"),
                        "--nosyslog", "-N"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = out.read_bytes().replace(b"\r\n", b"\n").split(b"=====END=====\n")
    assert len(got) == len(msgs)        # the metadata message not among them
    for (_, m, _), g in zip(msgs[1:], got):
        # fetchmail adds its Received: header and ends each with a newline
        assert g.endswith(wire(m).replace(b"\r\n", b"\n")), g[:200]
        assert g.startswith(b"Received: ")
    with open(p.mbox, "rb") as f:
        assert f.read() == spool_bytes(msgs[:1])       # all fetched and deleted


def test_mpop_downloads_awkward_spool(mbox_world, tmp_path):
    mpop = need("mpop")
    msgs = awkward()
    p = mbox_world(spool_bytes(msgs))
    out = tmp_path / "md"
    for d in ("cur", "new", "tmp"):
        (out / d).mkdir(parents=True)
    rc = tmp_path / "mpoprc"
    rc.write_text("account default\nhost 127.0.0.1\nport %d\nuser alice\n"
                  "password alice-pw\nauth user\ntls off\ntimeout 60\n"
                  "delivery maildir %s\nuidls_file %s\nkeep on\nreceived_header off\n"
                  % (p.port, out, tmp_path / "uidls"))
    rc.chmod(0o600)
    r = subprocess.run([mpop, "-C", str(rc), "-q"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = []
    for n in os.listdir(out / "new"):
        got.append((out / "new" / n).read_bytes())
    want = [wire(m).replace(b"\r\n", b"\n") for _, m, _ in msgs[1:]]
    assert sorted(got) == sorted(want)
    # kept on the server: a second run fetches nothing new (stable UIDLs)
    r = subprocess.run([mpop, "-C", str(rc), "-q"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(os.listdir(out / "new")) == len(want)
    with open(p.mbox, "rb") as f:
        assert f.read() == spool_bytes(msgs)


def movemail_view(mbox_path, tmp_path, name):
    """What GNU mailutils makes of the mbox: each message as movemail
    writes it into a Maildir (it takes its own locks), sorted."""
    movemail = need("movemail")
    src = tmp_path / (name + ".mbox")
    shutil.copyfile(mbox_path, src)
    dest = tmp_path / (name + ".md")
    r = subprocess.run([movemail, "--no-config", str(src), "maildir:%s" % dest],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = []
    for sub in ("new", "cur"):
        for n in os.listdir(dest / sub):
            out.append((dest / sub / n).read_bytes())
    return sorted(out)


def procmail_deliver(spool_file, msg, tmp_path):
    """Starts procmail delivering msg to spool_file (with its dot lock and
    fcntl lock, as it delivers to /var/mail), verbose into a log."""
    procmail = need("procmail")
    rc = tmp_path / "procmailrc"
    log = tmp_path / "procmail.log"
    rc.write_text("LOGFILE=%s\nVERBOSE=on\nLOCKSLEEP=1\n" % log)
    pm = subprocess.Popen([procmail, "-m", "DEFAULT=%s" % spool_file, str(rc)],
                          stdin=subprocess.PIPE)
    pm.stdin.write(msg)
    pm.stdin.close()
    return pm, log


def test_procmail_waits_for_the_session_then_mailutils_reads_back(mbox_world, tmp_path):
    msgs = [(frm(i), b"Subject: m%d\n\nbody %d\n" % (i, i), b"\n") for i in range(1, 7)]
    p = mbox_world(spool_bytes(msgs))
    c = login(p.port)
    assert c.stat()[0] == 6
    new = (b"From late@example.org Mon Dec  7 05:00:00 2026\n"
           b"From: late@example.org\nSubject: delivered meanwhile\n\nlate body\n")
    pm, log = procmail_deliver(p.mbox, new, tmp_path)
    try:
        # procmail tries the dot lock, finds ours, and waits
        wait_until(lambda: log.exists() and b"Locking" in log.read_bytes(), timeout=20)
        assert pm.poll() is None, log.read_text()
        with open(p.mbox, "rb") as f:
            assert f.read() == spool_bytes(msgs)
        c.dele(1)
        c.dele(4)
        assert c.quit().startswith(b"+OK")
        assert pm.wait(timeout=60) == 0, log.read_text()
    finally:
        if pm.poll() is None:
            pm.kill()
    with open(p.mbox, "rb") as f:
        data = f.read()
    kept = spool_bytes([msgs[1], msgs[2], msgs[4], msgs[5]])
    assert data.startswith(kept)
    assert data[len(kept):] == new + b"\n"
    # mailutils sees exactly the expected messages, byte for byte
    theirs = movemail_view(p.mbox, tmp_path, "got")
    want = [m for _, m, _ in (msgs[1], msgs[2], msgs[4], msgs[5])] + [new.split(b"\n", 1)[1]]
    assert theirs == sorted(want)
    # and pop3d lists them the same way
    d = login(p.port)
    assert d.stat()[0] == 5
    d.quit()


def test_mail_delivered_after_a_killed_session_and_mailutils(mbox_world, tmp_path):
    """A session killed while it holds the spool leaves a dot lock with a
    dead pid: the next session (liblockfile) takes it over."""
    msgs = [(frm(i), b"Subject: m%d\n\nbody %d\n" % (i, i), b"\n") for i in range(1, 4)]
    p = mbox_world(spool_bytes(msgs))
    c = login(p.port)
    c.stat()
    pid = session_pid(p, 1)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_gone(pid), timeout=10)
    assert os.path.exists(p.mbox + ".lock")
    d = login(p.port)
    assert d.stat()[0] == 3
    d.dele(2)
    assert d.quit().startswith(b"+OK")
    with open(p.mbox, "rb") as f:
        assert f.read() == spool_bytes([msgs[0], msgs[2]])


def session_pid(p, nth):
    """The pid of the nth session login in the log."""
    import re
    log = p.wait_log(r"login: user=alice .*pid=\d+", count=nth)
    return int(re.findall(r"login: user=alice .*pid=(\d+)", log)[nth - 1])


def parse_messages(data):
    """The messages of an mbox as pop3d would list them (a small model of
    mbox.c's rule: a From_ line with a time, at the start or after a blank
    line), each with its From_ line."""
    import re
    starts = []
    at = 0 if data.startswith(b"From ") else data.find(b"\n\nFrom ") + 2
    while at >= 2 or (at == 0 and data.startswith(b"From ")):
        eol = data.find(b"\n", at)
        if eol != -1 and re.search(rb"\d:\d\d", data[at:eol]):
            starts.append(at)
        nxt = data.find(b"\n\nFrom ", at + 1)
        at = nxt + 2 if nxt != -1 else -1
    out = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 1 if k + 1 < len(starts) else len(data)
        out.append(data[s:e])
    return out


def test_kill_during_rewrite(mbox_world, tmp_path):
    """QUIT starts a rewrite of a large spool; the session is killed at
    moments spread over it.  After each kill every message that was not
    deleted is in the file whole; the next session finishes the job."""
    rnd = random.Random(18)
    msgs = []
    for i in range(1, 29):
        # small ones, deleted, between large ones (several copy buffers
        # long): the deleted gap is far smaller than what moves down
        size = 300 if i % 4 == 1 else rnd.choice((3000, 300000, 1500000, 2500000))
        body = b"".join(b"msg %d line %d ....................................\n" % (i, k)
                        for k in range(size // 50))
        msgs.append((frm(i), b"Subject: m%d\n\n" % i + body, b"\n"))
    data = spool_bytes(msgs)
    p = mbox_world(data)
    dele = [i for i in range(1, 29) if i % 4 == 1]
    kept = [msgs[i - 1] for i in range(1, 29) if i not in dele]
    kept_records = [f + m for f, m, _ in kept]

    # how long an uninterrupted rewrite takes here
    c = login(p.port)
    for i in dele:
        c.dele(i)
    t0 = time.monotonic()
    assert c.quit().startswith(b"+OK")
    full = time.monotonic() - t0
    with open(p.mbox, "rb") as f:
        assert f.read() == spool_bytes(kept)

    killed = 0
    states = {(a, b): 0 for a in (False, True) for b in (False, True)}
    for attempt in range(12):
        put_mbox(p.spool, "alice", data)
        c = login(p.port)
        for i in dele:
            c.dele(i)
        pid = session_pid(p, 2 + 2 * attempt)
        c.sock.sendall(b"QUIT\r\n")
        # a moment spread over the rewrite: the one sleep that is the point
        time.sleep(full * attempt / 12.0)
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
        # dead, not dying: a write under way when the signal came ends first
        wait_until(lambda: process_gone(pid), timeout=10)
        c.close()
        with open(p.mbox, "rb") as f:
            now = f.read()
        states[now == data, now == spool_bytes(kept)] += 1
        got = parse_messages(now)
        for r in kept_records:
            assert r in got or r + b"\n" in got, "lost after a kill at attempt %d" % attempt
        # and the spool is still one the next session opens
        d = login(p.port)
        assert d.stat()[0] >= len(kept)
        d.quit()
    assert killed >= 6
    print("rewrite %.3fs; kills before it, during it, after it: %d %d %d"
          % (full, states[True, False], states[False, False], states[False, True]))


def test_spool_the_session_cannot_lock_in(world, mailroot, tmp_path):  # noqa: F811
    """A spool directory neither writable by the user nor group mail's:
    no dot lock can be made, the client gets -ERR [SYS/TEMP] and the log
    says why; the file is untouched."""
    if not IS_ROOT:
        pytest.skip("needs root to make a directory the session cannot write to")
    spool = os.path.join(mailroot.path, "spool-closed")
    os.mkdir(spool, 0o755)
    data = spool_bytes(awkward(big=100))
    path = put_mbox(spool, "alice", data)
    p = world(pop3d_keys={"maildrop": "mbox:%s/%%u" % spool}, users={"alice": []})
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    c.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        c.pass_("alice-pw")
    assert b"[SYS/TEMP]" in e.value.args[0]
    p.wait_log(r"cannot create .*alice\.lock: cannot write in the spool directory")
    with open(path, "rb") as f:
        assert f.read() == data


def test_stopping_pop3d_removes_the_dot_lock(mbox_world):
    """pop3d stopping (SIGTERM to its sessions) takes the sessions' dot
    locks away too: procmail and postfix judge a left-over one by its age
    only and would hold deliveries back for minutes."""
    msgs = [(frm(i), b"Subject: m%d\n\nbody %d\n" % (i, i), b"\n") for i in range(1, 3)]
    p = mbox_world(spool_bytes(msgs))
    c = login(p.port)
    assert c.stat()[0] == 2
    lock = p.mbox + ".lock"
    assert os.path.exists(lock)
    pid = session_pid(p, 1)
    os.kill(pid, signal.SIGTERM)        # as pop3d's master does when it stops
    wait_until(lambda: process_gone(pid), timeout=10)
    assert not os.path.exists(lock)
    with open(p.mbox, "rb") as f:
        assert f.read() == spool_bytes(msgs)
