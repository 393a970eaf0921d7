"""The Debian package (debian/, `make deb`): built from the tree without
touching it, inspected with dpkg-deb and lintian, and, as root, installed
with apt into a fresh Debian 12 root: units enabled, users made, the
shipped configuration valid, an operator's edits kept across a second
install, and a purge that removes what the package made but never mail.

The fresh root is a debootstrap minbase of bookworm, built once and cached
under DEB_ROOT_CACHE (default /var/tmp/pop3d-deb-test; it starts from
../shared/tools/fresh-machine's base when that exists), then copied for
each run; the packages apt downloads are cached beside it.  Building the
base takes a few minutes the first time; a run after that about two.
"""

import contextlib
import fcntl
import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO

CI = bool(os.environ.get("CI"))
CACHE = os.environ.get("DEB_ROOT_CACHE", "/var/tmp/pop3d-deb-test")
FRESH_MACHINE_BASE = "/var/tmp/fresh-machine/base"
TOOLS = ("dpkg-buildpackage", "dh", "lintian", "dpkg-deb", "dpkg-parsechangelog")

pytestmark = pytest.mark.skipif(
    os.environ.get("SANITIZER", "") != "",
    reason="tests the packaging, not the code: once, in the plain pass")


def need(tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = "not installed: %s (scripts/install-deps brings them)" % " ".join(missing)
        if CI:
            pytest.fail(msg)
        pytest.skip(msg)


def run(cmd, timeout=600, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def changelog_version():
    r = run(["dpkg-parsechangelog", "-l", os.path.join(REPO, "debian/changelog"),
             "-S", "Version"])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def project_version():
    text = open(os.path.join(REPO, "common/version.h")).read()
    return re.search(r'#define PROJECT_VERSION "([^"]+)"', text).group(1)


def test_deb_version_matches_the_programs():
    """debian/changelog's upstream version is the one --version prints."""
    need(["dpkg-parsechangelog"])
    assert changelog_version() == project_version() + "-1"


def git_status():
    if not os.path.isdir(os.path.join(REPO, ".git")) and \
            not os.path.isfile(os.path.join(REPO, ".git")):
        return None
    r = run(["git", "-C", REPO, "status", "--porcelain", "--ignored"])
    return r.stdout if r.returncode == 0 else None


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """Builds the package with `make deb` into a temporary DEBDIR
    (nocheck: the unit tests run in make check anyway) and returns the
    path of pop3d_*.deb."""
    need(TOOLS)
    out = tmp_path_factory.mktemp("deb")
    before = git_status()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZER")}
    env["DEB_BUILD_OPTIONS"] = "nocheck"
    r = run(["make", "-C", REPO, "deb", "DEBDIR=%s" % out], timeout=1200, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (out / "build.log").write_text(r.stdout + r.stderr)
    # the tree is as it was: no debian/.debhelper, debian/pop3d, debian/files
    if before is not None:
        assert git_status() == before
    for leftover in ("debian/.debhelper", "debian/pop3d", "debian/files", "debian/build",
                     "debian/debhelper-build-stamp", "debian/pop3d.substvars"):
        assert not os.path.exists(os.path.join(REPO, leftover)), leftover
    debs = glob.glob(str(out / "pop3d_*.deb"))
    assert len(debs) == 1, os.listdir(out)
    assert os.path.basename(debs[0]) == "pop3d_%s_%s.deb" % (
        changelog_version(), run(["dpkg", "--print-architecture"]).stdout.strip())
    return debs[0]


def test_deb_contents_and_control(deb):
    r = run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends", "Section"])
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert fields["Package"] == "pop3d"
    assert fields["Version"] == project_version() + "-1"
    assert fields["Section"] == "mail"
    for dep in ("systemd | systemd-standalone-sysusers", "libevent-2.1-7", "libsodium23",
                "libinih1", "libpam0g", "libldap-2.5-0", "libmemcached11"):
        assert dep in fields["Depends"], (dep, fields["Depends"])

    r = run(["dpkg-deb", "-c", deb])
    assert r.returncode == 0, r.stderr
    entries = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        entries[parts[5].lstrip(".")] = (parts[0], parts[1])
    for f in ["/usr/sbin/authd", "/usr/sbin/pop3d", "/usr/bin/authctl", "/usr/bin/pop3-load",
              "/usr/libexec/authd/authd-pam-helper"]:
        assert entries[f] == ("-rwxr-xr-x", "root/root"), (f, entries.get(f))
    for f in ["/lib/systemd/system/authd.service", "/lib/systemd/system/pop3d.service",
              "/usr/lib/sysusers.d/pop3d.conf", "/usr/lib/tmpfiles.d/pop3d.conf",
              "/usr/share/man/man8/authd.8.gz", "/usr/share/man/man8/pop3d.8.gz",
              "/usr/share/man/man5/pop3d.conf.5.gz", "/usr/share/man/man1/authctl.1.gz",
              "/usr/share/man/man1/pop3-load.1.gz", "/usr/share/doc/pop3d/copyright",
              "/usr/share/doc/pop3d/examples/pop3d.conf.example"]:
        assert entries[f][0] == "-rw-r--r--", (f, entries.get(f))
    assert entries["/etc/pop3d/pop3d.conf"] == ("-rw-r-----", "root/root")
    # the example beside it is make install's; the package has it in doc/
    assert "/etc/pop3d/pop3d.conf.example" not in entries
    assert not [f for f in entries if f.startswith("/usr/local")]

    r = run(["dpkg-deb", "-I", deb, "conffiles"])
    assert r.stdout.split() == ["/etc/pop3d/pop3d.conf"], r.stdout
    postinst = run(["dpkg-deb", "-I", deb, "postinst"]).stdout
    for snippet in ("systemd-sysusers", "systemd-tmpfiles", "deb-systemd-helper enable 'authd.service'",
                    "deb-systemd-helper enable 'pop3d.service'", "deb-systemd-invoke"):
        assert snippet in postinst, snippet


def test_deb_lintian_clean(deb):
    """No error or warning at lintian's default level; the overrides are
    in debian/pop3d.lintian-overrides, each with its reason."""
    changes = glob.glob(os.path.join(os.path.dirname(deb), "pop3d_*.changes"))
    assert len(changes) == 1
    r = run(["lintian", "--fail-on", "error,warning", changes[0]], timeout=600)
    tags = [line for line in r.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert r.returncode == 0 and not tags, r.stdout + r.stderr


def test_deb_built_with_dpkg_buildflags(deb, tmp_path):
    """Every compiler line of the package build, the PAM helper's own rule
    included, carries dpkg-buildflags' flags; the programs are PIE with
    full RELRO, stack protector and fortified calls."""
    need(["readelf"])
    # make echoes a recipe's continued lines as they are written
    log = open(os.path.join(os.path.dirname(deb), "build.log")).read().replace("\\\n", " ")
    cc = [line for line in log.splitlines()
          if re.search(r"\b(cc|gcc)\b.* -o \S+ .*\.c\b", line) or
          re.search(r"\b(cc|gcc)\b.* -c -o ", line)]
    assert any("pam_helper.c" in line for line in cc), "no compile line in the build log"
    for line in cc:
        for flag in ("-ffile-prefix-map=", "-Werror=format-security", "-D_FORTIFY_SOURCE=2",
                     "-fstack-protector-strong"):
            assert flag in line, (flag, line)
    r = run(["dpkg-deb", "-x", deb, str(tmp_path)])
    assert r.returncode == 0, r.stderr
    for p in ["usr/sbin/authd", "usr/sbin/pop3d", "usr/bin/authctl",
              "usr/libexec/authd/authd-pam-helper"]:
        path = str(tmp_path / p)
        assert "DYN (Position-Independent Executable" in run(["readelf", "-h", path]).stdout, p
        assert "BIND_NOW" in run(["readelf", "-d", path]).stdout, p
        assert "GNU_RELRO" in run(["readelf", "-l", path]).stdout, p
        syms = run(["readelf", "--dyn-syms", "-W", path]).stdout
        assert "__stack_chk_fail" in syms and "_chk@" in syms.replace("__stack_chk_fail", ""), p


# ---- the fresh Debian 12 root ---------------------------------------------

def mirror():
    try:
        text = open("/etc/apt/sources.list.d/debian.sources").read()
        m = re.search(r"^URIs:\s*(\S+)", text, re.M)
        if m:
            return m.group(1)
    except OSError:
        pass
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def mounted(root, archives=None):
    """/proc, /sys, /dev (and /dev/pts) in `root` as fresh-machine mounts
    them, and apt's download cache bound to `archives`; unmounted on the
    way out, whatever happened."""
    done = []
    try:
        for args, where in ((["-t", "proc", "proc"], "proc"), (["-t", "sysfs", "sys"], "sys"),
                            (["--bind", "/dev"], "dev"), (["--bind", "/dev/pts"], "dev/pts")) + \
                (((["--bind", archives], "var/cache/apt/archives"),) if archives else ()):
            target = os.path.join(root, where)
            os.makedirs(target, exist_ok=True)
            r = run(["mount"] + args + [target])
            assert r.returncode == 0, (where, r.stderr)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=60)


def remove_root(path):
    """rm -rf of a root that a killed run may have left with mounts inside:
    those are unmounted first (deepest first), and rm stays on this file
    system, so it can never reach the host's /dev or /proc."""
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], timeout=600, check=True)


def in_root(root, script, timeout=900):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    return run(["chroot", root, "/bin/sh", "-c", script], timeout=timeout, env=env)


def unreachable(msg):
    """The Debian mirror cannot be reached: a failure in CI (which needs it
    for install-deps anyway), a skip on an offline developer's machine."""
    if CI:
        pytest.fail(msg)
    pytest.skip("no Debian mirror? " + msg[-500:])


def base_root():
    """The cached Debian 12 minbase with apt's lists, built once (under a
    lock, so concurrent runs wait for the one building it)."""
    base = os.path.join(CACHE, "base")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(base, ".ready")):
            return base
        tmp = base + ".tmp"
        remove_root(tmp)
        if os.path.exists(os.path.join(FRESH_MACHINE_BASE, "usr/bin/apt-get")):
            r = run(["cp", "-a", FRESH_MACHINE_BASE, tmp])
            assert r.returncode == 0, r.stderr
        else:
            r = run(["debootstrap", "--variant=minbase", "bookworm", tmp, mirror()], timeout=1800)
            if r.returncode != 0:
                unreachable("debootstrap failed: " + (r.stdout + r.stderr)[-3000:])
        for src in glob.glob("/etc/apt/sources.list.d/debian.sources"):
            shutil.copy(src, os.path.join(tmp, "etc/apt/sources.list.d/"))
        shutil.copy("/etc/resolv.conf", os.path.join(tmp, "etc/resolv.conf"))
        with mounted(tmp):
            r = in_root(tmp, "apt-get update -q")
        if r.returncode != 0:
            unreachable("apt-get update in the base failed: " + r.stdout + r.stderr)
        remove_root(base)
        os.rename(tmp, base)
        open(os.path.join(base, ".ready"), "w").close()
        return base


@pytest.fixture
def fresh_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("installs into a chroot: needs root")
    tools = ["chroot", "mount", "umount"]
    if not os.path.exists(os.path.join(CACHE, "base/.ready")) and \
            not os.path.exists(FRESH_MACHINE_BASE + "/usr/bin/apt-get"):
        tools.append("debootstrap")
    need(tools)
    base = base_root()
    runs = os.path.join(CACHE, "runs")
    os.makedirs(runs, exist_ok=True)
    # roots of runs that were killed before their clean-up (600 MB each)
    for old in glob.glob(os.path.join(runs, "root-*")):
        pid = old.rsplit("-", 1)[1]
        if not pid.isdigit() or not os.path.exists("/proc/" + pid):
            remove_root(old)
    root = os.path.join(runs, "root-%d" % os.getpid())
    remove_root(root)
    archives = os.path.join(CACHE, "archives")
    os.makedirs(os.path.join(archives, "partial"), exist_ok=True)
    r = run(["cp", "-a", base, root])
    assert r.returncode == 0, r.stderr
    try:
        with mounted(root, archives):
            yield root
    finally:
        remove_root(root)


def apt_install(root, debname, extra=""):
    script = "apt-get install -y -q %s /tmp/%s" % (extra, debname)
    r = in_root(root, script)
    if r.returncode != 0 and ("404" in r.stdout + r.stderr or "Unable to fetch" in r.stdout + r.stderr):
        # the cached lists are older than the mirror: refresh them once
        in_root(root, "apt-get update -q")
        r = in_root(root, script)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r


def exists(root, path):
    return os.path.lexists(os.path.join(root, path.lstrip("/")))


def has_user(root, name):
    return in_root(root, "getent passwd %s" % name).returncode == 0


def has_group(root, name):
    return in_root(root, "getent group %s" % name).returncode == 0


def test_deb_install_upgrade_purge_in_fresh_debian(deb, fresh_root):
    root = fresh_root
    debname = os.path.basename(deb)
    shutil.copy(deb, os.path.join(root, "tmp", debname))
    assert not exists(root, "/var/empty") and not has_user(root, "authd")
    # an operator's system user of the same name, made before the package:
    # the package uses it and never removes it
    r = in_root(root, "useradd --system --no-create-home --shell /usr/sbin/nologin pop3d")
    assert r.returncode == 0, r.stderr
    # mail that is not the package's: an mbox and a Maildir
    r = in_root(root, "mkdir -p /var/mail /home/alice/Maildir/new /home/alice/Maildir/cur "
                "/home/alice/Maildir/tmp && echo 'From a@b Mon Dec  7 00:00:00 2026' > /var/mail/alice "
                "&& echo 'Subject: kept' > /home/alice/Maildir/new/1.eml")
    assert r.returncode == 0, r.stderr

    # ---- install: users, units enabled, the shipped configuration valid
    apt_install(root, debname)
    assert has_user(root, "authd") and has_user(root, "pop3d")
    for unit in ("authd.service", "pop3d.service"):
        link = os.path.join(root, "etc/systemd/system/multi-user.target.wants", unit)
        assert os.readlink(link) == "/lib/systemd/system/" + unit
        # offline (no systemd runs in the chroot), from the unit files
        r = in_root(root, "systemctl is-enabled %s" % unit)
        assert r.returncode == 0 and r.stdout.strip() == "enabled", (unit, r.stdout + r.stderr)
    for daemon in ("authd", "pop3d"):
        r = in_root(root, "%s -t -c /etc/pop3d/pop3d.conf" % daemon)
        assert r.returncode == 0, (daemon, r.stdout + r.stderr)
        r = in_root(root, "%s --version" % daemon)
        assert project_version() in r.stdout, r.stdout + r.stderr
    st = os.stat(os.path.join(root, "etc/pop3d/users"))
    assert st.st_mode & 0o777 == 0o640 and st.st_size == 0
    assert in_root(root, "stat -c %U:%G /etc/pop3d/users").stdout.strip() == "root:authd"
    assert os.stat(os.path.join(root, "etc/pop3d/pop3d.conf")).st_mode & 0o777 == 0o640
    assert os.path.isdir(os.path.join(root, "var/empty"))
    created = open(os.path.join(root, "var/lib/pop3d/created")).read().split("\n")
    assert "user authd" in created and "user pop3d" not in created, created
    assert "file /etc/pop3d/users" in created and "dir /var/empty" in created, created

    # ---- a second install keeps the operator's configuration and users
    conf = os.path.join(root, "etc/pop3d/pop3d.conf")
    edited = open(conf).read().replace("log-level = info", "log-level = debug", 1) + "# mine\n"
    open(conf, "w").write(edited)
    users = os.path.join(root, "etc/pop3d/users")
    open(users, "w").write("alice:{PLAIN}x:1000:1000::/home/alice::\n")
    apt_install(root, debname, "--reinstall")
    assert open(conf).read() == edited
    assert open(users).read().startswith("alice:")
    assert not exists(root, "/etc/pop3d/pop3d.conf.dpkg-new")
    assert in_root(root, "authd -t -c /etc/pop3d/pop3d.conf").returncode == 0

    # ---- purge: what the package made goes; mail, the operator's user and
    # a passwd-file holding users stay
    r = in_root(root, "apt-get purge -y -q pop3d")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "keeping /etc/pop3d/users" in r.stdout + r.stderr
    assert in_root(root, "dpkg-query -W -f '${Status}' pop3d").stdout.strip() in ("", "unknown ok not-installed")
    assert not has_user(root, "authd") and not has_group(root, "authd")
    assert has_user(root, "pop3d")
    for gone in ("/etc/pop3d/pop3d.conf", "/var/lib/pop3d", "/var/empty", "/usr/sbin/authd",
                 "/etc/systemd/system/multi-user.target.wants/authd.service",
                 "/etc/systemd/system/multi-user.target.wants/pop3d.service"):
        assert not exists(root, gone), gone
    assert open(users).read().startswith("alice:")
    assert open(os.path.join(root, "var/mail/alice")).read().startswith("From ")
    assert open(os.path.join(root, "home/alice/Maildir/new/1.eml")).read() == "Subject: kept\n"

    # ---- again from nothing, over a pop3d.conf that `make install` left:
    # kept with --force-confold (docs/operations.md), the package's beside
    # it; then purge leaves no trace at all
    os.unlink(users)
    assert in_root(root, "userdel pop3d").returncode == 0
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    open(conf, "w").write(edited + "# from make install\n")
    apt_install(root, debname, "-o Dpkg::Options::=--force-confold")
    assert open(conf).read() == edited + "# from make install\n"
    assert exists(root, "/etc/pop3d/pop3d.conf.dpkg-dist")
    assert in_root(root, "authd -t -c /etc/pop3d/pop3d.conf").returncode == 0
    r = in_root(root, "apt-get purge -y -q pop3d")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    for gone in ("/etc/pop3d", "/var/lib/pop3d", "/var/empty"):
        assert not exists(root, gone), gone
    for name in ("authd", "pop3d"):
        assert not has_user(root, name) and not has_group(root, name), name
    assert open(os.path.join(root, "var/mail/alice")).read().startswith("From ")
    assert os.path.exists(os.path.join(root, "home/alice/Maildir/new/1.eml"))
