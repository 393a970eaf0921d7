"""Dovecot's password schemes in a passwd-file, through the real authd.

The hashes were made by Debian bookworm's dovecot-core 2.3.19.1 with
`doveadm pw -s SCHEME -p "$PW"` (the same vectors as authd/test-password.c,
which names the command beside each).  test_vectors_recomputed_independently
checks them with Python's hashlib/hmac, so the vectors do not rest on
Dovecot alone; test_fresh_doveadm_hashes (only where doveadm is installed)
logs in with hashes made on the spot, with new salts."""

import base64
import hashlib
import hmac
import os
import shutil
import subprocess

import pytest

from conftest import BUILD

PW = "correct horse battery staple"

# scheme -> hash after the {SCHEME} prefix, each holding PW.
VECTORS = {
    "SHA": "q/eq1kOINtvlJqojGr3i0O73TUI=",
    "SHA.HEX": "abf7aad6438836dbe526aa231abde2d0eef74d42",
    "SHA256": "xLvLH77JnWW/WdhcjLYu4tuWPw/hBvSD2a+nO9Tjmoo=",
    "SHA256.HEX": "c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a",
    "SHA512": "vl73Z52Iq5qQRfYmflX15XhLS4zXZLXNhVpSRPkcYmlTzUbEPXZohz/W7707IhJJMVWAAxlj"
              "RyoHh4H+BG5irg==",
    "PLAIN-MD5": "9cc2ae8a1ba7a93da39b46fc1019c481",
    "LDAP-MD5": "nMKuihunqT2jm0b8EBnEgQ==",
    "SSHA": "A+d584eOX7tsWXB/vOy4QhlG6W5KMK70",
    "SSHA256": "q/FnIOxVu8qgGFwgbkyBlyr3+qzpmSbAxIQTKYLKGPqJW99Z",
    "SSHA512": "m1KuJuZptebsRgrUtaRFaknqOdzk/Lq4e/bqsrPKbWo+WTNIcKiyhKIW1cNpcfckqwUB3MsF"
               "ycD/az3a7KIZO14300s=",
    "SMD5": "CRAT0//Y3KtoJbKslUnVsvAbjNA=",
    "MD5": "$1$0KMzk7WF$xEQAhz.uQlZ9ki6Ws0BLV.",
    "MD5-CRYPT": "$1$PzhsEGpC$ptJ/ZR4tDQQnkFcNDiAhO/",
    "PBKDF2": "$1$7OB8A7WqtxWvUurj$5000$0ddc644015a450c364741a176658f9cc2b4c7b4b",
    "SCRAM-SHA-1": "4096,69eFRpFvYQ8mO0eCQ3GsJQ==,J5Yj4C9PsX9aJhUSAu5X4DS3jbg=,"
                   "FYVLYmPxvwnCv81QrMdwXl0hmOg=",
    "SCRAM-SHA-256": "4096,atkHn5TZ1Wzy7xa3kBU8Uw==,+K4izy7Q0xSlcdhaxGpyZaohH57D2jRjMEv0Bb/Wm9E=,"
                     "DSynw6chs1K9xwdW8clcuyeMPDk9GmJHtbXNNb9jyn8=",
    "CRAM-MD5": "09eae0fafdb8b11dde53f0031217a5c4938a03ccb3eebe1b64e0c243b569921c",
    "PLAIN-TRUNC": "28-" + PW,
}

# Refused schemes: (line, the words the warning must hold).
REFUSED = [
    ("{DIGEST-MD5}0aa957a5230b526246d640c747db7c5f", "{DIGEST-MD5}: not supported"),
    ("{PLAIN-MD4}131adffe1d8712c1b624ba62b5bcf3fd", "{PLAIN-MD4}: not supported"),
    ("{OTP}sha1 1024 e18bf18612d546cb 35061aac5fd30ef6", "{OTP}: not supported"),
    ("{SSHA}A+d584eOX7tsWXB/vOy4QhlG6W5KMK7", "{SSHA}: bad base64"),
    ("{SSHA}q/eq1kOINtvlJqojGr3i0O73TUI=", "{SSHA}: no salt"),
    ("{SHA256}q/eq1kOINtvlJqojGr3i0O73TUI=", "{SHA256}: hash is 20 bytes, not 32"),
    ("{PBKDF2}$1$7OB8A7WqtxWvUurj$0$0ddc644015a450c364741a176658f9cc2b4c7b4b",
     "{PBKDF2}: rounds"),
    ("{Secret-Looking-Name}abc", "unknown password scheme"),
]


def authctl(authd, user, password):
    return subprocess.run([os.path.join(BUILD, "authctl"), "-s", authd.socket, "test", user],
                          input=password + "\n", capture_output=True, text=True, timeout=60)


def user_of(scheme):
    return "u-" + scheme.lower().replace(".", "-")


def write_file(path, lines):
    path.write_text("".join(lines))
    os.chmod(path, 0o600)


def test_dovecot_schemes_log_in(authd_factory, tmp_path):
    path = tmp_path / "users"
    write_file(path, ["%s:{%s}%s:%d:%d::/home/%s::\n" % (user_of(s), s, h, 2000 + i, 2000 + i,
                                                         user_of(s))
                      for i, (s, h) in enumerate(VECTORS.items())])
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "workers": "2"})])
    log = a.log_text()
    assert "loaded %d users" % len(VECTORS) in log, log
    for i, s in enumerate(VECTORS):
        r = authctl(a, user_of(s), PW)
        assert r.returncode == 0 and "uid=%d" % (2000 + i) in r.stdout, (s, r.stdout, r.stderr)
        r = authctl(a, user_of(s), "Correct horse battery staple")
        assert r.returncode == 1 and r.stdout.startswith("FAIL"), (s, r.stdout)
    assert "unusable password hash" not in a.log_text()


def test_refused_schemes_are_named_not_shown(authd_factory, tmp_path):
    path = tmp_path / "users"
    lines = ["ok:{SSHA}%s:1:1::/home/ok::\n" % VECTORS["SSHA"]]
    lines += ["r%d:%s:1:1::/home/r::\n" % (i, line) for i, (line, _) in enumerate(REFUSED)]
    write_file(path, lines)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path)})])
    log = a.log_text()
    assert "loaded 1 users" in log, log
    for i, (line, words) in enumerate(REFUSED):
        lineno = i + 2
        hits = [x for x in log.splitlines() if "users:%d: user r%d:" % (lineno, i) in x]
        assert len(hits) == 1 and words in hits[0] and hits[0].endswith("skipped"), (words, log)
        # The hash (after the prefix) never reaches the log.
        secret = line.split("}", 1)[1]
        assert secret[:12] not in log, line
    assert "Secret-Looking-Name" not in log
    assert authctl(a, "ok", PW).returncode == 0
    assert authctl(a, "r0", PW).returncode == 1


def test_vectors_recomputed_independently():
    """The vectors above, checked with hashlib/hmac rather than Dovecot."""
    pw = PW.encode()

    def b64(s):
        return base64.b64decode(s, validate=True)

    assert b64(VECTORS["SHA"]) == hashlib.sha1(pw).digest()
    assert bytes.fromhex(VECTORS["SHA.HEX"]) == hashlib.sha1(pw).digest()
    assert b64(VECTORS["SHA256"]) == hashlib.sha256(pw).digest()
    assert bytes.fromhex(VECTORS["SHA256.HEX"]) == hashlib.sha256(pw).digest()
    assert b64(VECTORS["SHA512"]) == hashlib.sha512(pw).digest()
    assert bytes.fromhex(VECTORS["PLAIN-MD5"]) == hashlib.md5(pw).digest()
    assert b64(VECTORS["LDAP-MD5"]) == hashlib.md5(pw).digest()
    for scheme, h in (("SSHA", hashlib.sha1), ("SSHA256", hashlib.sha256),
                      ("SSHA512", hashlib.sha512), ("SMD5", hashlib.md5)):
        raw = b64(VECTORS[scheme])
        n = h().digest_size
        assert len(raw) > n and raw[:n] == h(pw + raw[n:]).digest(), scheme
    _, _, salt, rounds, key = VECTORS["PBKDF2"].split("$")
    assert hashlib.pbkdf2_hmac("sha1", pw, salt.encode(), int(rounds), 20).hex() == key
    for scheme, name in (("SCRAM-SHA-1", "sha1"), ("SCRAM-SHA-256", "sha256")):
        it, salt, stored, server = VECTORS[scheme].split(",")
        salted = hashlib.pbkdf2_hmac(name, pw, b64(salt), int(it))
        client_key = hmac.new(salted, b"Client Key", name).digest()
        assert hashlib.new(name, client_key).digest() == b64(stored), scheme
        assert hmac.new(salted, b"Server Key", name).digest() == b64(server), scheme
    # MD5-CRYPT: openssl passwd -1 with the vector's salt gives the same string.
    for scheme in ("MD5", "MD5-CRYPT"):
        salt = VECTORS[scheme].split("$")[2]
        out = subprocess.check_output(["openssl", "passwd", "-1", "-salt", salt, PW],
                                      text=True).strip()
        assert out == VECTORS[scheme], scheme


# Schemes doveadm writes that authd verifies (DES-CRYPT reads 8 bytes only,
# so it is left to the unit tests).
FRESH = ["SHA", "SHA256", "SHA512", "SSHA", "SSHA256", "SSHA512", "SMD5", "PLAIN-MD5",
         "LDAP-MD5", "MD5", "MD5-CRYPT", "CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT",
         "PBKDF2", "SCRAM-SHA-1", "SCRAM-SHA-256", "CRAM-MD5", "HMAC-MD5", "ARGON2I",
         "ARGON2ID", "SHA256.HEX", "SSHA.HEX", "PLAIN-MD5.B64", "PLAIN.B64", "PLAIN"]


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="dovecot-core not installed")
def test_fresh_doveadm_hashes(authd_factory, tmp_path):
    pw = "p\u00e4ssw\u00f6rd-\u20ac fresh"
    lines = []
    for i, s in enumerate(FRESH):
        args = ["doveadm", "pw", "-s", s, "-p", pw]
        if s.startswith("ARGON2"):
            args[2:2] = ["-r", "3"]  # rounds (t); memory stays doveadm's default
        h = subprocess.check_output(args, text=True).strip()
        lines.append("%s:%s:%d:%d::/home/x::\n" % (user_of(s), h, 3000 + i, 3000 + i))
    path = tmp_path / "users"
    write_file(path, lines)
    a = authd_factory([("pw", {"type": "passwd-file", "path": str(path), "workers": "2"})])
    assert "loaded %d users" % len(FRESH) in a.log_text(), a.log_text()
    for s in FRESH:
        assert authctl(a, user_of(s), pw).returncode == 0, s
        assert authctl(a, user_of(s), pw[:-1]).returncode == 1, s
