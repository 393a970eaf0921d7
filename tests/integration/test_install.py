"""make install / uninstall, the systemd units (systemd-analyze verify) and
the manual pages (groff -wall, man --warnings)."""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, REPO


def make(*args):
    san = os.environ.get("SANITIZER", "")
    cmd = ["make", "-s", "-C", REPO] + (["SANITIZER=" + san] if san else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def test_install_tree_and_uninstall(tmp_path):
    dest = str(tmp_path / "stage")
    r = make("install", "DESTDIR=" + dest, "PREFIX=/usr/local")
    assert r.returncode == 0, r.stderr
    files = tree(dest)
    for f in ["usr/local/sbin/authd", "usr/local/sbin/pop3d", "usr/local/bin/authctl",
              "usr/local/libexec/authd/authd-pam-helper",
              "etc/pop3d/pop3d.conf", "etc/pop3d/pop3d.conf.example",
              "usr/local/lib/systemd/system/authd.service",
              "usr/local/lib/systemd/system/pop3d.service",
              "usr/local/lib/sysusers.d/pop3d.conf", "usr/local/lib/tmpfiles.d/pop3d.conf",
              "usr/local/share/man/man8/authd.8", "usr/local/share/man/man8/pop3d.8",
              "usr/local/share/man/man5/pop3d.conf.5",
              "usr/local/share/locale/pl/LC_MESSAGES/pop3d.mo",
              "usr/local/share/locale/de/LC_MESSAGES/pop3d.mo"]:
        assert f in files, (f, files)
    assert any(f.startswith("usr/local/share/man/man1/authctl.1") or
               f.startswith("usr/local/share/man/man8/authctl.8") for f in files)
    unit = open(os.path.join(dest, "usr/local/lib/systemd/system/authd.service")).read()
    assert "ExecStart=/usr/local/sbin/authd -f -c /etc/pop3d/pop3d.conf" in unit
    assert "@" not in unit.replace("$MAINPID", "")
    assert os.stat(os.path.join(dest, "etc/pop3d/pop3d.conf")).st_mode & 0o007 == 0
    # a second install never overwrites the operator's configuration
    conf = os.path.join(dest, "etc/pop3d/pop3d.conf")
    with open(conf, "a") as f:
        f.write("# mine\n")
    assert make("install", "DESTDIR=" + dest, "PREFIX=/usr/local").returncode == 0
    assert open(conf).read().endswith("# mine\n")
    # uninstall removes everything but the configuration
    r = make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr/local")
    assert r.returncode == 0, r.stderr
    assert tree(dest) == ["etc/pop3d/pop3d.conf"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path):
    root = str(tmp_path / "root")
    r = make("install", "PREFIX=%s/usr" % root, "SYSCONFDIR=%s/etc" % root)
    assert r.returncode == 0, r.stderr
    units = glob.glob(root + "/usr/lib/systemd/system/*.service")
    assert len(units) == 2
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr



def test_example_config_is_valid(tmp_path):
    """The commented example that make install puts in place passes both
    daemons' -t.  -t also checks the system as a start would (users, the
    passwd-file, login-chroot), so what an install provides and this
    machine may lack is pointed at things that exist here; every other
    line is the example's own."""
    (tmp_path / "users").write_text("")
    chroot = tmp_path / "empty"
    chroot.mkdir(mode=0o755)
    here = {"user": "nobody" if os.geteuid() == 0 else None,
            "login-user": "nobody" if os.geteuid() == 0 else None,
            "path": str(tmp_path / "users"),
            "login-chroot": str(chroot)}
    lines = []
    with open(REPO + "/conf/pop3d.conf.example") as f:
        for line in f:
            key = line.split("=", 1)[0].strip()
            if "=" in line and not line.lstrip().startswith(("#", ";")) and here.get(key):
                line = "%s = %s\n" % (key, here[key])
            lines.append(line)
    conf = tmp_path / "pop3d.conf"
    conf.write_text("".join(lines))
    conf.chmod(0o600)
    for daemon in ("authd", "pop3d"):
        r = subprocess.run([os.path.join(BUILD, daemon), "-t", "-c", str(conf)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (daemon, r.stdout + r.stderr)


@pytest.mark.parametrize("page", sorted(glob.glob(REPO + "/man/*.[158]")))
def test_man_pages_lint_clean(page):
    r = subprocess.run(["groff", "-wall", "-man", "-z", "-Tutf8", page],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", page],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    assert r.returncode == 0 and r.stderr == "", r.stderr


def fresh_machine_stubs(tmp_path):
    """A PATH whose pkg-config fails until a stub install-deps has run, as
    on a fresh machine where the -dev packages come with the first make."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "installed"
    real = shutil.which("pkg-config")
    (bindir / "pkg-config").write_text(
        "#!/bin/sh\n[ -e '%s' ] || exit 1\nexec '%s' \"$@\"\n" % (marker, real))
    (tmp_path / "install-deps").write_text("#!/bin/sh\ntouch '%s'\n" % marker)
    (tmp_path / "demo").write_text(
        "#!/bin/sh\nfor p in authd pop3d authctl; do test -x \"$BUILD_DIR/$p\" || exit 1; done\n"
        "echo demo-started\n")
    for f in (bindir / "pkg-config", tmp_path / "install-deps", tmp_path / "demo"):
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZER", "CI")}
    env["PATH"] = "%s:%s" % (bindir, os.environ["PATH"])
    return env, marker


@pytest.mark.skipif(os.environ.get("SANITIZER", "") != "",
                    reason="tests the Makefile, not the code: once, in the plain pass")
def test_make_run_links_on_a_fresh_machine(tmp_path):
    """`make run` installs the packages and then builds, in one command: the
    flags pkg-config gives after the install reach the link (the first make
    run on a fresh machine once failed with undefined references)."""
    env, marker = fresh_machine_stubs(tmp_path)
    r = subprocess.run(["make", "-s", "-j2", "-C", REPO, "run",
                        "BUILDDIR=%s" % (tmp_path / "build"),
                        "INSTALL_DEPS=%s" % (tmp_path / "install-deps"),
                        "DEMO=%s" % (tmp_path / "demo")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert marker.exists()
    assert r.returncode == 0 and "demo-started" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.skipif(os.environ.get("SANITIZER", "") != "",
                    reason="tests the Makefile, not the code: once, in the plain pass")
def test_make_without_packages_says_so(tmp_path):
    """A goal that builds without installing stops with the reason before
    compiling anything, instead of failing to link."""
    env, marker = fresh_machine_stubs(tmp_path)
    r = subprocess.run(["make", "-C", REPO, "programs", "BUILDDIR=%s" % (tmp_path / "build")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Debian packages are missing" in r.stderr and "make deps" in r.stderr, r.stderr
    assert not (tmp_path / "build").exists()
    assert not marker.exists()
