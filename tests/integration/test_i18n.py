"""Internationalised POP3 (issue 21): RFC 6856 LANG and UTF8, responses
from the message catalogues in po/ (built into BUILD/locale), and one
normalisation of user names in authd.  The real authd and pop3d on
127.0.0.1, raw clients (pop3lib.Client) and poplib."""

import base64
import os
import poplib
import unicodedata

import pytest

from authdlib import wait_until
from conftest import BUILD
from pop3lib import Client
from test_pop3d import CRLF_MSG, PLAIN_MSG, mailroot, world  # noqa: F401 (fixtures)

LOCALE = os.path.join(BUILD, "locale")
JORG = "j\u00f6rg"                                  # NFC, as the passwd-file has it
JORG_NFD = unicodedata.normalize("NFD", JORG)       # "jo" U+0308 "rg"


def text(line):
    """A response line as the server meant it (pop3lib reads latin-1)."""
    return line.encode("latin-1").decode("utf-8")


def utf8_cmd(c, cmd):
    c.send(cmd.encode("utf-8") + b"\r\n")
    return text(c.line())


@pytest.fixture
def i18n(world):
    def make(pop3d_keys=None, users=None, start=True):
        keys = {"language-dir": LOCALE}
        keys.update(pop3d_keys or {})
        return world(pop3d_keys=keys, users=users, start=start)
    return make


def installed():
    return sorted(d for d in os.listdir(LOCALE)
                  if os.path.exists(os.path.join(LOCALE, d, "LC_MESSAGES", "pop3d.mo")))


def test_catalogues_built():
    """make builds every po/LL.po; Polish and German at least."""
    assert {"pl", "de"} <= set(installed())


def test_lang_pl_before_and_after_login(i18n):
    p = i18n({"max-sessions-per-user": "1"})
    c = Client(p.port)
    capa = [c.cmd("CAPA")]
    while capa[-1] != ".":
        capa.append(c.line())
    assert "LANG" in capa
    assert text(c.cmd("LANG pl")) == "+OK pl Zmieniono język"
    # AUTHORIZATION state, front end: text translated, codes unchanged
    assert text(c.cmd("CAPA")) == "+OK Lista możliwości serwera"
    while c.line() != ".":
        pass
    assert text(c.cmd("XYZZY")) == "-ERR Nieznane polecenie"
    assert text(c.cmd("STAT")) == "-ERR Nie zalogowano"
    assert c.cmd("USER alice") == "+OK"
    assert text(c.cmd("PASS wrong")) == "-ERR [AUTH] Uwierzytelnianie nie powiodło się"
    assert c.cmd("USER alice") == "+OK"
    size = len(PLAIN_MSG.replace(b"\n", b"\r\n")) + len(CRLF_MSG)
    # TRANSACTION state, the session process: the language followed
    logged = text(c.cmd("PASS alice-pw"))
    assert logged.startswith("+OK Zalogowano, wiadomości: 3 (oktetów: "), logged
    # machine-read parts never change
    stat = c.cmd("STAT")
    assert stat.startswith("+OK 3 "), stat
    assert text(c.cmd("LIST")) == "+OK Lista wiadomości"
    assert c.line().startswith("1 ")
    while c.line() != ".":
        pass
    assert c.cmd("LIST 2") == "+OK 2 %d" % len(CRLF_MSG)
    assert c.cmd("RETR 2") == "+OK %d octets" % len(CRLF_MSG)
    assert c.multiline() == CRLF_MSG
    assert text(c.cmd("DELE 1")) == "+OK Usunięto wiadomość 1"
    assert text(c.cmd("DELE 1")) == "-ERR Wiadomość 1 jest już usunięta"
    assert text(c.cmd("RETR 9")) == "-ERR Nie ma takiej wiadomości"
    assert text(c.cmd("USER bob")) == "-ERR Już zalogowano"
    assert text(c.cmd("CAPA")) == "+OK Lista możliwości serwera"
    while c.line() != ".":
        pass
    # a second session, refused by the master in the client's language
    d = Client(p.port)
    assert text(d.cmd("LANG pl")).startswith("+OK pl ")
    assert d.cmd("USER alice") == "+OK"
    assert text(d.cmd("PASS alice-pw")) == "-ERR [IN-USE] Zbyt wiele sesji tego użytkownika"
    d.close()
    assert text(c.cmd("RSET")).startswith("+OK Liczba wiadomości w skrzynce: 3 (oktetów: ")
    assert text(c.cmd("QUIT")) == "+OK Wylogowano"
    assert size > 0
    # log lines stay English
    log = p.wait_log(r"logout: user=alice ")
    assert "Zalogowano" not in log and "login: user=alice" in log


def test_lang_in_the_session_and_german(i18n):
    p = i18n()
    c = poplib.POP3("127.0.0.1", p.port, timeout=15)
    c.user("alice")
    c.pass_("alice-pw")
    assert text(c._shortcmd("LANG de").decode("latin-1")) == "+OK de Sprache geändert"
    assert text(c._shortcmd("DELE 3").decode("latin-1")) == "+OK Nachricht 3 gelöscht"
    assert c.stat()[0] == 2
    # "*" is the server's default (English here)
    assert c._shortcmd("LANG *") == b"+OK en Language changed"
    assert c.quit() == b"+OK Logging out"
    # the next login goes to that session process, now a spare
    # (session-reuse): the language comes with the job
    wait_until(lambda: p.metric("pop3d_session_spares") == 1, 10, "a spare")
    d = Client(p.port)
    assert text(d.cmd("LANG de")).startswith("+OK de ")
    assert d.cmd("USER alice") == "+OK"
    assert text(d.cmd("PASS alice-pw")).startswith("+OK Angemeldet, 2 Nachrichten (")
    assert text(d.cmd("QUIT")) == "+OK Abmeldung"
    wait_until(lambda: p.metric("pop3d_session_starts_total", process="reuse") == 1, 10,
               "the reuse counted")


def test_lang_listing_is_the_installed_catalogues(i18n):
    p = i18n()
    c = Client(p.port)
    assert c.cmd("LANG") == "+OK Language listing follows:"
    listing = []
    while True:
        line = text(c.line())
        if line == ".":
            break
        listing.append(line)
    assert [line.split(" ")[0] for line in listing] == ["en"] + installed()
    assert "en English" in listing and "pl Polski" in listing and "de Deutsch" in listing
    # the same after the login, from the session process
    assert c.cmd("USER bob") == "+OK"
    assert c.cmd("PASS bob-pw").startswith("+OK")
    assert c.cmd("LANG") == "+OK Language listing follows:"
    after = []
    while True:
        line = text(c.line())
        if line == ".":
            break
        after.append(line)
    assert after == listing


def test_unknown_language_keeps_the_current_one(i18n):
    p = i18n()
    c = Client(p.port)
    assert text(c.cmd("LANG pl")) == "+OK pl Zmieniono język"
    # RFC 6856 section 3: -ERR, and the language stays
    assert text(c.cmd("LANG uga")) == "-ERR pl Nieznany język: uga"
    assert text(c.cmd("XYZZY")) == "-ERR Nieznane polecenie"
    # RFC 4647 basic filtering: "de-DE" does not match "de"; a range that
    # is not one is not echoed
    assert text(c.cmd("LANG de-DE")) == "-ERR pl Nieznany język: de-DE"
    assert text(c.cmd("LANG x_y!")) == "-ERR pl Nieznany język"
    # case-insensitive; "*" is the default
    assert text(c.cmd("LANG DE")) == "+OK de Sprache geändert"
    assert c.cmd("LANG *") == "+OK en Language changed"
    assert c.cmd("XYZZY") == "-ERR Unknown command"
    # after the login too
    assert c.cmd("USER bob") == "+OK"
    assert c.cmd("PASS bob-pw").startswith("+OK Logged in")
    assert c.cmd("LANG tlh") == "-ERR en Unknown language: tlh"
    assert c.cmd("NOOP") == "+OK"
    assert c.cmd("QUIT") == "+OK Logging out"


def test_default_language(i18n):
    p = i18n({"default-language": "de"})
    c = Client(p.port)
    assert text(c.cmd("CAPA")) == "+OK Liste der Fähigkeiten folgt"
    while c.line() != ".":
        pass
    assert c.cmd("LANG en") == "+OK en Language changed"
    assert text(c.cmd("LANG *")) == "+OK de Sprache geändert"
    assert c.cmd("USER alice") == "+OK"
    assert text(c.cmd("PASS alice-pw")).startswith("+OK Angemeldet, 3 Nachrichten (")


def test_default_language_not_installed_refused(i18n, tmp_path):
    import subprocess
    p = i18n({"default-language": "fr"}, start=False)
    r = subprocess.run([os.path.join(BUILD, "pop3d"), "-t", "-c", p.conf],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "default-language fr: no such catalogue" in r.stderr


def utf8_world(i18n, keys=None):
    return i18n(keys, users={JORG: [("new/1.M1.host", PLAIN_MSG)], "alice": []})


def test_utf8_capability_and_nfd_login(i18n):
    p = utf8_world(i18n)
    c = Client(p.port)
    capa = [c.cmd("CAPA")]
    while capa[-1] != ".":
        capa.append(c.line())
    assert "UTF8 USER" in capa and "LANG" in capa
    # without UTF8, a non-ASCII name is refused (RFC 6856 section 2)
    assert utf8_cmd(c, "USER " + JORG) == "-ERR Non-ASCII user names need the UTF8 command first"
    assert c.cmd("UTF8") == "+OK UTF-8 mode enabled"
    # the client sends NFD, the passwd-file has NFC: authd normalises
    assert utf8_cmd(c, "USER " + JORG_NFD) == "+OK"
    assert utf8_cmd(c, "PASS %s-pw" % JORG).startswith("+OK Logged in, 1 messages"), \
        "NFD name did not log in"
    assert c.cmd("RETR 1").startswith("+OK")
    assert c.multiline() == PLAIN_MSG.replace(b"\n", b"\r\n")
    assert c.cmd("QUIT").startswith("+OK")
    # one name in the logs: the NFC one, escaped
    p.wait_log(r"login: user=j\\xc3\\xb6rg ")


def test_two_spellings_count_once_per_user(i18n):
    p = utf8_world(i18n, {"max-sessions-per-user": "1"})
    a = Client(p.port)
    assert a.cmd("UTF8").startswith("+OK")
    assert utf8_cmd(a, "USER " + JORG) == "+OK"
    assert utf8_cmd(a, "PASS %s-pw" % JORG).startswith("+OK Logged in")
    b = Client(p.port)
    assert b.cmd("UTF8").startswith("+OK")
    assert utf8_cmd(b, "USER " + JORG_NFD) == "+OK"
    assert utf8_cmd(b, "PASS %s-pw" % JORG) == "-ERR [IN-USE] Too many sessions for this user"
    b.close()
    # AUTH PLAIN carries UTF-8 by definition: the NFD name, SASL
    s = Client(p.port)
    resp = base64.b64encode(("\0%s\0%s-pw" % (JORG_NFD, JORG)).encode("utf-8")).decode()
    assert s.cmd("AUTH PLAIN " + resp) == "-ERR [IN-USE] Too many sessions for this user"
    s.close()
    assert a.cmd("QUIT").startswith("+OK")
    wait_until(lambda: p.metric("pop3d_sessions_ended_total", reason="QUIT") == 1, 10,
               "the session's report")


def test_invalid_utf8_refused(i18n):
    p = utf8_world(i18n)
    c = Client(p.port)
    assert c.cmd("UTF8").startswith("+OK")
    c.send(b"USER j\xf6rg\r\n")             # Latin-1, not UTF-8
    assert c.line() == "-ERR User name is not valid UTF-8"
    c.send(b"USER j\xc3\r\n")               # truncated
    assert c.line() == "-ERR User name is not valid UTF-8"
    c.send(b"USER \xed\xa0\x80x\r\n")       # a surrogate
    assert c.line() == "-ERR User name is not valid UTF-8"
    assert c.cmd("USER alice") == "+OK"
    c.send(b"PASS \xff\xfe\r\n")
    assert c.line() == "-ERR Password is not valid UTF-8"
    assert c.cmd("PASS alice-pw") == "-ERR USER first"
    # through SASL authd refuses it: a failed login like any other
    resp = base64.b64encode(b"\0j\xf6rg\0x").decode()
    assert c.cmd("AUTH PLAIN " + resp) == "-ERR [AUTH] Authentication failed"
    wait_until(lambda: "auth failed: user=(invalid)" in p.authd.log_text(), 10,
               "authd's log line")
    # the connection goes on
    assert c.cmd("USER alice") == "+OK"
    assert c.cmd("PASS alice-pw").startswith("+OK Logged in")
