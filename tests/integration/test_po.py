"""The message catalogues of pop3d's responses (issue 21): po/pop3d.pot is
what xgettext finds in the sources now (a response string added without
`make pot` fails here), every po/LL.po compiles with msgfmt --check, Polish
and German are complete, and no response text bypasses the catalogues."""

import os
import re
import subprocess

import pytest

from conftest import REPO

PO = os.path.join(REPO, "po")


def msgids(pot_text):
    """The msgids of a .pot/.po file (the header's empty one left out)."""
    ids = set()
    for m in re.finditer(r'^msgid ((?:"(?:[^"\\]|\\.)*"\n)+)', pot_text, re.M):
        s = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
        if s:
            ids.add(s)
    return ids


def test_pot_is_current(tmp_path):
    fresh = tmp_path / "fresh.pot"
    subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "pot-file",
                    "POT=%s" % fresh], check=True, timeout=120)
    now = msgids(fresh.read_text(encoding="utf-8"))
    with open(os.path.join(PO, "pop3d.pot"), encoding="utf-8") as f:
        committed = msgids(f.read())
    assert len(now) > 50
    missing = sorted(now - committed)
    stale = sorted(committed - now)
    assert not missing, "response strings not in po/pop3d.pot (run make pot): %r" % missing
    assert not stale, "po/pop3d.pot has strings the sources no longer use (make pot): %r" % stale


def po_files():
    return sorted(f for f in os.listdir(PO) if f.endswith(".po"))


@pytest.mark.parametrize("po", po_files())
def test_po_compiles(po, tmp_path):
    r = subprocess.run(["msgfmt", "--check", "--statistics", "-o", str(tmp_path / "x.mo"),
                        os.path.join(PO, po)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(PO, po), encoding="utf-8") as f:
        ids = msgids(f.read())
    with open(os.path.join(PO, "pop3d.pot"), encoding="utf-8") as f:
        assert msgids(f.read()) <= ids, "%s lacks strings of po/pop3d.pot (make pot)" % po


@pytest.mark.parametrize("lang", ["pl", "de"])
def test_complete(lang):
    r = subprocess.run(["msgfmt", "--check", "--statistics", "-o", "/dev/null",
                        os.path.join(PO, lang + ".po")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "untranslated" not in r.stderr and "fuzzy" not in r.stderr, r.stderr


def test_no_response_text_outside_the_catalogues():
    """A literal "+OK Text" or "-ERR [CODE] Text" in pop3d's code would
    reach the client in English whatever its LANG: the text must go
    through tr(), lang_tr() or N_()."""
    bad = []
    lit = re.compile(r'"(\+OK|-ERR)( \[[A-Z/-]+\])? [A-Za-z]')
    src = os.path.join(REPO, "pop3d")
    for name in sorted(os.listdir(src)):
        if not name.endswith(".c") or name.startswith(("test-", "fuzz-")):
            continue
        with open(os.path.join(src, name), encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                code = line.split("//")[0]
                if code.lstrip().startswith(("*", "/*")):
                    continue
                if lit.search(code):
                    bad.append("pop3d/%s:%d: %s" % (name, n, line.strip()))
    assert not bad, "response text not from a catalogue:\n" + "\n".join(bad)
