"""Command-line conventions of every program (issue 20, item 5): -h and
--help print the usage on standard output and exit 0, --version prints
the name and version, and an unknown option exits 2 with the usage on
standard error."""

import os
import re
import subprocess

import pytest

from conftest import BUILD

PROGRAMS = ["authd", "pop3d", "authctl", "pop3-load"]


def run(prog, *args):
    return subprocess.run([os.path.join(BUILD, prog)] + list(args), capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_help_version_and_bad_options(prog):
    for flag in ("-h", "--help"):
        r = run(prog, flag)
        assert r.returncode == 0, (flag, r.stderr)
        assert r.stdout.startswith("usage: %s" % prog), r.stdout
        assert r.stderr == ""
    r = run(prog, "--version")
    assert r.returncode == 0 and r.stderr == ""
    assert re.fullmatch(r"%s \d+\.\d+\.\d+\n" % prog, r.stdout), r.stdout
    for bad in (["--no-such-option"], ["-Z"]):
        r = run(prog, *bad)
        assert r.returncode == 2, (bad, r.returncode)
        assert "usage: %s" % prog in r.stderr
        # pop3-load also writes its JSON error line (pop3-load(1)); the
        # others nothing on standard output
        if prog == "pop3-load":
            assert '"error":"usage"' in r.stdout, r.stdout
        else:
            assert r.stdout == ""


def test_same_version_everywhere():
    versions = {run(p, "--version").stdout.split()[1] for p in PROGRAMS}
    assert len(versions) == 1, versions
