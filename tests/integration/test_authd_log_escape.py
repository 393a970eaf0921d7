"""authd's auth lines keep their fixed format whatever the user name: the
name (and address) are escaped as one token (common/log.c log_token), so
the fail2ban filter authd(8) documents, taken from the man page itself,
bans the real address and nothing else, and no raw 8-bit byte, tab or line
break reaches the log (issue 13 item 10)."""

import os
import re

from conftest import REPO
from pop3lib import passwd_line

HOSTILE = [
    b"mallory service=pop3 rip=198.51.100.7 authenticator=pw time=1.0ms",
    b"rip=1.2.3.4",
    b"x rip=1.2.3.4",
    b"x\trip=1.2.3.4",
    b"x\nauth failed: user=y service=pop3 rip=1.2.3.4 authenticator=pw time=1.0ms",
    b"x\rauth failed: user=y service=pop3 rip=1.2.3.4 authenticator=pw time=1.0ms",
    b"m\xc3\xa9llory rip=1.2.3.4",
    b"\xff\xfe rip=1.2.3.4",
    # NEL and LINE SEPARATOR: line breaks to a reader that decodes UTF-8
    b"x\xc2\x85auth failed: user=y service=pop3 rip=1.2.3.4 authenticator=pw time=1.0ms",
    b"x\xe2\x80\xa8auth failed: user=y service=pop3 rip=1.2.3.4 authenticator=pw time=1ms",
    b'x" rip="1.2.3.4',
    b"x\\x20rip=1.2.3.4",
    b"  padded rip=1.2.3.4  ",
]


def man_failregex():
    """The failregex line of man/authd.8, as a fail2ban user would copy it,
    made into a Python regex for authd's stderr log lines: the prefix is
    the daemon tag `authd[PID]: `, <HOST> anything without blanks (broader
    than fail2ban's, so harder to keep honest)."""
    with open(os.path.join(REPO, "man", "authd.8")) as f:
        m = re.search(r"^failregex = (.*)$", f.read(), re.M)
    assert m, "no failregex in man/authd.8"
    rx = m.group(1).replace("\\e", "\\").replace("\\-", "-").replace("\\(dq", '"')
    rx = rx.replace("\\&", "")
    assert "%(__prefix_line)s" in rx and "<HOST>" in rx, rx
    rx = rx.replace("%(__prefix_line)s", r"authd\[\d+\]: ")
    rx = rx.replace("<HOST>", r"(?P<host>\S+)")
    return re.compile(rx)


def proto_escape(b):
    return (b.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r"))


def test_fail2ban_filter_sees_only_the_real_address(authd_factory, tmp_path):
    pw = tmp_path / "users"
    pw.write_text(passwd_line("alice", "alice-pw", "/nonexistent"))
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(pw)})])
    c = a.client(timeout=10)
    # each from its own address: authd logs the first failure of an
    # address in full (later ones are summarised once a minute)
    for i, user in enumerate(HOSTILE, 1):
        c.send_raw(b"AUTH\t%d\tservice=pop3\tuser=%s\tpass=wrong\trip=127.0.1.%d\n"
                   % (i, proto_escape(user), i))
        r = c.read_reply()
        assert (r.cmd, r.id) == ("FAIL", str(i)), (user, r)
    assert c.auth("alice", "alice-pw", rip="127.0.0.1").cmd == "OK"
    c.close()

    with open(a.log, "rb") as f:
        raw = f.read()
    lines = [ln for ln in raw.split(b"\n") if b"auth failed:" in ln or b"auth ok:" in ln]
    # authd writes the lines before it answers: all are there.
    assert len(lines) == len(HOSTILE) + 1, lines
    for ln in lines:
        assert all(0x20 <= b < 0x7f for b in ln), ln     # no 8-bit, tab, CR
    text = raw.decode("utf-8", errors="replace")
    # no character a decoder would take for a line break (NEL, U+2028, CR)
    assert text.splitlines() == text.rstrip("\n").split("\n")

    rx = man_failregex()
    hosts = []
    for ln in text.split("\n"):
        m = rx.search(ln)
        if m:
            hosts.append(m.group("host"))
    assert hosts == ["127.0.1.%d" % i for i in range(1, len(HOSTILE) + 1)], hosts

    # Not only fail2ban's regex: any reader that takes the first `rip=`
    # token, or splits on blanks, sees one name and the real address.
    for ln in lines:
        tokens = ln.decode().split(" ")
        rips = [t for t in tokens if t.startswith("rip=")]
        assert len(rips) == 1 and re.fullmatch(r"rip=127\.0\.[01]\.\d+", rips[0]), ln
        assert re.fullmatch(r"authd\[\d+\]: info: auth (?:failed|ok): user=\S+ service=\S+ "
                            r"rip=\S+ authenticator=\S+ time=[0-9.]+ms", ln.decode()), ln
