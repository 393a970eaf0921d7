"""Issue 19: the Maildir index "pop3d-index" (pop3d/maildir.c, DESIGN: "The
index").  An open whose new/ and cur/ have not changed since the index was
written (and had settled then) lists the maildrop from it; anything else
reads the directories again.  The real authd and pop3d, real clients
(poplib and raw sockets): deliveries, an MUA's renames and deletions
between two logins and during one, corrupt, truncated and foreign indexes,
UIDLs across rebuilds, a read-only Maildir."""

import os
import poplib
import re
import shutil

import pytest

from authdlib import wait_until
from pop3lib import IS_ROOT, TEST_GID, TEST_UID, user_uid
# the pop3d suite's fixtures and helpers
from test_pop3d import (BINARY_MSG, CRLF_MSG, PLAIN_MSG, login, mailroot, wire,  # noqa: F401
                        world)
from test_pop3d import wait_spares

INDEX = "pop3d-index"
NEW_MSG = b"From: d@example.org\nSubject: delivered\n\nlate mail\n"


def index_text(md):
    with open(os.path.join(md, INDEX)) as f:
        return f.read()


def write_index(md, text, owner=True):
    """Puts text as md's index (as the mailbox owner's file, unless not
    owner), never touching new/ or cur/."""
    p = os.path.join(md, INDEX)
    with open(p + ".test", "w") as f:
        f.write(text)
    os.chmod(p + ".test", 0o600)
    if IS_ROOT and owner:
        os.chown(p + ".test", TEST_UID, TEST_GID)
    os.replace(p + ".test", p)


def deliver(md, rel, data):
    p = os.path.join(md, rel)
    with open(p + ".part", "wb") as f:
        f.write(data)
    if IS_ROOT:
        os.chown(p + ".part", TEST_UID, TEST_GID)
    os.rename(p + ".part", p)


# No spares: each poll's session is a new process, which reads the index.
# (A spare that served the same user last would use the listing it kept,
# under the same rule: test_pop3d.py's warm-listing tests.)
NO_SPARES = {"session-spares": "0"}


def poll(port, user="alice"):
    """One client poll: [(uidl, size)] of the maildrop, then QUIT."""
    c = login(port, user)
    uidls = [x.split()[1].decode() for x in c.uidl()[1]]
    sizes = [int(x.split()[1]) for x in c.list()[1]]
    c.quit()
    return list(zip(uidls, sizes))


def settle(p, md, user="alice"):
    """Logs in until the index says its directories had settled (they must
    be POP3D_INDEX_SETTLE_S old first): from then on an unchanged maildrop
    is listed from the index alone."""
    def settled():
        poll(p.port, user)
        return os.path.exists(os.path.join(md, INDEX)) and "\nsettled 1\n" in index_text(md)
    wait_until(settled, 15, "a settled index", interval=0.25)
    return index_text(md)


def msg_lines(text):
    return [line for line in text.splitlines() if re.match(r"\d+ \d+ \d+ \d+ (new|cur)/", line)]


ALICE = [("1000000001.M1.host", len(wire(PLAIN_MSG))),
         ("1000000002.M2.host", len(wire(CRLF_MSG))),
         ("1000000003.M3.host", len(wire(BINARY_MSG)))]


def test_index_written_by_the_owner_and_trusted_when_settled(world):
    p = world(NO_SPARES)
    md = p.maildirs["alice"]
    assert poll(p.port) == ALICE
    st = os.stat(os.path.join(md, INDEX))
    assert st.st_uid == user_uid() and st.st_mode & 0o777 == 0o600
    text = settle(p, md)
    assert text.startswith("pop3d-index 1\nowner %d " % user_uid())
    assert len(msg_lines(text)) == 3
    # trusted: a size changed in the index (the stamps left alone) is
    # what LIST says, so no directory was read
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line.endswith("new/1000000001.M1.host"))
    lines[i] = "4242" + lines[i][lines[i].index(" "):]
    write_index(md, "\n".join(lines))
    assert poll(p.port)[0] == ("1000000001.M1.host", 4242)


@pytest.mark.skipif(not IS_ROOT, reason="a file of another user needs root")
def test_index_of_another_uid_is_refused(world):
    """The index is refused if the file is not the owner's: the same text,
    planted by root (with a size changed), is not read."""
    p = world(NO_SPARES)
    md = p.maildirs["alice"]
    text = settle(p, md)
    write_index(md, text.replace("\n%d " % ALICE[0][1], "\n4242 ", 1), owner=False)
    assert "\n4242 " in index_text(md)
    assert poll(p.port) == ALICE
    assert os.stat(os.path.join(md, INDEX)).st_uid == TEST_UID


def test_changes_between_two_logins(world):
    p = world(NO_SPARES)
    md = p.maildirs["alice"]
    settle(p, md)
    # a delivery
    deliver(md, "new/1000000004.M4.host", NEW_MSG)
    assert poll(p.port) == ALICE + [("1000000004.M4.host", len(wire(NEW_MSG)))]
    assert "new/1000000004.M4.host" in index_text(md)
    # an MUA reads one: new/ to cur/ with the Seen flag; same UIDL
    os.rename(os.path.join(md, "new/1000000001.M1.host"),
              os.path.join(md, "cur/1000000001.M1.host:2,S"))
    assert poll(p.port) == ALICE + [("1000000004.M4.host", len(wire(NEW_MSG)))]
    assert "cur/1000000001.M1.host:2,S\n" in index_text(md)
    c = login(p.port)
    assert b"\r\n".join(c.retr(1)[1]) + b"\r\n" == wire(PLAIN_MSG)
    c.quit()
    # an MUA deletes one
    os.unlink(os.path.join(md, "cur/1000000002.M2.host:2,"))
    assert poll(p.port) == [ALICE[0], ALICE[2], ("1000000004.M4.host", len(wire(NEW_MSG)))]
    assert len(msg_lines(index_text(md))) == 3


def test_changes_during_one_session(world):
    """Opened from a settled index; meanwhile an MUA renames message 1,
    deletes message 2 and a message is delivered.  RETR 1 finds it under
    its new name, RETR 2 is an -ERR for that message alone, the session
    goes on, DELE 1 + QUIT deletes the renamed file; the next login sees
    the delivery."""
    p = world(NO_SPARES)
    md = p.maildirs["alice"]
    settle(p, md)
    c = login(p.port)
    assert c.stat()[0] == 3
    os.rename(os.path.join(md, "new/1000000001.M1.host"),
              os.path.join(md, "cur/1000000001.M1.host:2,S"))
    os.unlink(os.path.join(md, "cur/1000000002.M2.host:2,"))
    deliver(md, "new/1000000004.M4.host", NEW_MSG)
    assert b"\r\n".join(c.retr(1)[1]) + b"\r\n" == wire(PLAIN_MSG)
    with pytest.raises(poplib.error_proto) as e:
        c.retr(2)
    assert b"removed" in e.value.args[0]
    assert c.noop().startswith(b"+OK")
    assert b"\r\n".join(c.retr(3)[1]) + b"\r\n" == wire(BINARY_MSG)
    assert c.stat()[0] == 3            # the listing of the session's start
    c.dele(1)
    assert c.quit().startswith(b"+OK")
    p.wait_log(r"logout: user=alice .*reason=QUIT")
    assert not os.path.exists(os.path.join(md, "cur/1000000001.M1.host:2,S"))
    assert poll(p.port) == [ALICE[2], ("1000000004.M4.host", len(wire(NEW_MSG)))]


def test_truncated_and_corrupt_indexes_are_rebuilt(world):
    p = world(NO_SPARES)
    md = p.maildirs["alice"]
    good = settle(p, md)
    lines = good.split("\n")
    first = next(k for k, line in enumerate(lines) if re.match(r"\d+ \d+ \d+ \d+ ", line))
    bad = [
        # truncated after one message line, and mid-line
        "\n".join(lines[:first + 1]) + "\n",
        good[:len(good) - 9],
        # a message line naming a path outside new/ and cur/
        good.replace("new/1000000001.M1.host\n", "new/../../../etc/passwd\n", 1),
        # a message line too many for the count, or too few
        good.replace("\nend\n", "\n7 1 1 0 new/ghost\nend\n"),
        good.replace("messages 3\n", "messages 4\n"),
        # another version; garbage; trailing bytes
        good.replace("pop3d-index 1\n", "pop3d-index 2\n", 1),
        "\x00\x01 not an index at all\n",
        good + "end\n",
    ]
    for text in bad:
        write_index(md, text)
        assert poll(p.port) == ALICE, text
        assert index_text(md).endswith("\nend\n")
        assert len(msg_lines(index_text(md))) == 3


def test_index_from_another_users_maildir_is_refused(world):
    """bob's index copied into alice's Maildir (by alice: her file), even
    with alice's directory stamps in it, is refused: it names bob's
    Maildir.  (alice and bob share one uid here, as virtual users do.)"""
    p = world(NO_SPARES, users={"alice": [("new/1000000001.M1.host", PLAIN_MSG)],
                     "bob": [("new/2000000001.B1.host", CRLF_MSG),
                             ("cur/2000000002.B2.host:2,S", BINARY_MSG)]})
    amd, bmd = p.maildirs["alice"], p.maildirs["bob"]
    mine = settle(p, amd)
    theirs = settle(p, bmd, "bob")
    stamps = [line for line in mine.split("\n") if line.startswith(("new ", "cur "))]
    forged = [line for line in theirs.split("\n") if not line.startswith(("new ", "cur "))]
    forged[2:2] = stamps
    forged = "\n".join(forged)
    assert forged != theirs and len(msg_lines(forged)) == 2
    write_index(amd, forged)
    assert poll(p.port) == [("1000000001.M1.host", len(wire(PLAIN_MSG)))]
    assert "2000000001.B1.host" not in index_text(amd)
    owner = re.search(r"^owner (\d+) (\d+) (\d+)$", index_text(amd), re.M).groups()
    st = os.stat(amd)
    assert owner == (str(user_uid()), str(st.st_dev), str(st.st_ino))


def test_uidls_stable_across_rebuilds(world):
    odd = [("new/1000000001.M1.host", PLAIN_MSG), ("new/sp ace", CRLF_MSG),
           ("new/dup:2,", BINARY_MSG), ("cur/dup:2,S", NEW_MSG), ("new/" + "x" * 80, NEW_MSG)]
    p = world(NO_SPARES, users={"alice": odd})
    md = p.maildirs["alice"]
    first = poll(p.port)
    assert len(set(u for u, _ in first)) == 5
    assert poll(p.port) == first
    settle(p, md)
    assert poll(p.port) == first
    os.unlink(os.path.join(md, INDEX))
    assert poll(p.port) == first
    write_index(md, "pop3d-index 1\nowner 0 0 0\n")
    assert poll(p.port) == first
    assert poll(p.port) == first


def test_read_only_maildir(world):
    """The index cannot be written: every login works, one warning."""
    p = world()
    md = p.maildirs["alice"]
    assert poll(p.port) == ALICE         # the lock file exists from here on
    os.unlink(os.path.join(md, INDEX))
    wait_spares(p, 1)
    os.chmod(md, 0o555)
    try:
        for _ in range(3):
            assert poll(p.port) == ALICE
            wait_spares(p, 1)             # the same process serves the next
        assert not os.path.exists(os.path.join(md, INDEX))
        log = p.log_text()
        assert len(re.findall(r"warn: maildir: cannot write pop3d-index", log)) == 1, log
    finally:
        os.chmod(md, 0o755)
    assert poll(p.port) == ALICE
    assert os.path.exists(os.path.join(md, INDEX))
