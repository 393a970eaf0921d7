"""benchlib.py - what bench/run-bench and bench/compare-dovecot share: the
generated user base and maildrops, our daemons (authd + pop3d) on loopback
with a generated configuration, pop3-load runs, process memory, and the
machine description that goes into docs/benchmarks.md.

Everything lives in one temporary directory under /tmp (mode 0755, so that
sessions running as the mailbox owner can reach the maildrops), removed at
the end unless --keep is given.  Every process started here is stopped
here, by its pid."""

import hashlib
import json
import os
import platform
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("BUILD_DIR", os.path.join(REPO, "build"))
LOAD = os.path.join(BUILD, "pop3-load")
IS_ROOT = os.geteuid() == 0
# The mailbox owner of every generated user when running as root: one uid
# for all, as with virtual users ("vmail"), which Dovecot's reused pop3
# processes need (service_count > 1 serves one uid per process).
MAIL_UID = 41010
MAIL_GID = 41010
# OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane); the figure in
# the results says which parameters were used.
ARGON2_ARGS = ["-id", "-t", "2", "-k", "19456", "-p", "1"]
ARGON2_DESC = "argon2id m=19456 KiB, t=2, p=1"


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def greets(port, timeout=2):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        s.settimeout(timeout)
        return s.recv(512).startswith(b"+OK")
    except OSError:
        return False
    finally:
        s.close()


def raise_nofile(n):
    """Raises this process's descriptor limit (children inherit it): the
    `ulimit -n` of the idle scenario."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- the machine ------------------------------------------------------------

def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        # The results file itself does not count (a previous script wrote it).
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":!docs/benchmarks.md"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " (with uncommitted changes)"
    except OSError:
        commit = "unknown"
    debian = ""
    if os.path.exists("/etc/debian_version"):
        debian = "Debian " + open("/etc/debian_version").read().strip() + ", "
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": model,
        "mem_mib": mem,
        "os": debian + "Linux " + platform.release(),
        "commit": commit,
        "load": os.getloadavg()[0],
    }


def cpu_ticks():
    """(all ticks, steal ticks) of the machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[7]


def steal_percent(since):
    """CPU time the hypervisor took from this machine since `since` (a
    cpu_ticks() value), in % of all CPU time: the noise a virtual machine
    adds to every measurement."""
    now = cpu_ticks()
    total = now[0] - since[0]
    return 100.0 * (now[1] - since[1]) / total if total else 0.0


# ---- the data set -----------------------------------------------------------

WORDS = ("pop3 mail server login cache session maildrop message retrieve "
         "benchmark latency throughput process socket kernel fork event loop "
         "user password verify hash argon2 dovecot compare ratio").split()


def message(rnd, size, idx):
    """A message of about size bytes with LF line ends (one line in ten
    starts with a dot, so that stuffing is exercised)."""
    lines = ["From: bench@example.org", "To: user@example.org",
             "Subject: benchmark message %d" % idx,
             "Date: Tue, 14 Nov 2023 22:13:20 +0000",
             "Message-ID: <%d.%d@bench.example.org>" % (idx, rnd.randrange(1 << 30)), ""]
    n = sum(len(l) + 1 for l in lines)
    while n < size:
        words = [rnd.choice(WORDS) for _ in range(rnd.randrange(6, 12))]
        line = " ".join(words)
        if rnd.randrange(10) == 0:
            line = "." + line
        lines.append(line)
        n += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def make_maildir(home, count, size, seed, uid=None, gid=None):
    """home/Maildir with count messages of about size bytes in cur/, already
    seen (so that neither server renames files during a run); sizes in
    the names (,S= file size, ,W= size with CRLF line ends, which both
    pop3d and Dovecot trust)."""
    rnd = random.Random(seed)
    md = os.path.join(home, "Maildir")
    for d in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    total = 0
    for i in range(count):
        data = message(rnd, size, i)
        wsize = len(data) + data.count(b"\n")
        name = "%d.M%dP%d.bench,S=%d,W=%d:2,S" % (1700000000 + i, i, seed, len(data), wsize)
        p = os.path.join(md, "cur", name)
        with open(p, "wb") as f:
            f.write(data)
        t = 1700000000 + i
        os.utime(p, (t, t))
        total += wsize
    if IS_ROOT:
        for dirpath, _, files in os.walk(home):
            os.chown(dirpath, uid or MAIL_UID, gid or MAIL_GID)
            for fn in files:
                os.chown(os.path.join(dirpath, fn), uid or MAIL_UID, gid or MAIL_GID)
    return total


def argon2_hashes(passwords, cache_file):
    """{password: "$argon2id$..."}, computed with the argon2 tool two at a
    time and kept in cache_file (they take 70 ms each)."""
    cache = {}
    if os.path.exists(cache_file):
        with open(cache_file) as f:
            for line in f:
                pw, h = line.rstrip("\n").split(" ", 1)
                cache[pw] = h
    todo = [p for p in passwords if p not in cache]
    if todo:
        log("computing %d argon2id hashes (%s), cached in %s"
            % (len(todo), ARGON2_DESC, cache_file))
    procs = []

    def reap(p):
        out = p[1].stdout.read()
        if p[1].wait() != 0:
            raise RuntimeError("argon2 failed")
        cache[p[0]] = out.decode().strip()
    for pw in todo:
        salt = hashlib.sha256(pw.encode()).hexdigest()[:16]
        p = subprocess.Popen(["argon2", salt] + ARGON2_ARGS + ["-e"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        p.stdin.write(pw.encode())
        p.stdin.close()
        procs.append((pw, p))
        if len(procs) >= (os.cpu_count() or 2):
            reap(procs.pop(0))
    for p in procs:
        reap(p)
    if todo:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with open(cache_file, "w") as f:
            for pw, h in cache.items():
                f.write("%s %s\n" % (pw, h))
    return cache


class DataSet:
    """The generated user base and maildrops.

    fast users  bench0000 ... (count), argon2id hashes, maildrops of
                login_msgs messages of login_size bytes
    slow users  slow00 ... (16), known only to the slow helper
    retr user   retr0000: one maildrop of retr_msgs x retr_size bytes
    big user    big0000: one maildrop of big_msgs x big_size bytes (only
                with big_msgs > 0: the "maildrop-open" scenario's largest)
    twins       retr0001 and big0001 (with big_msgs > 0): maildrops of the
                same sizes, so that "maildrop-open" can alternate two users
                (no session process finds the listing of its last user)
    """

    def __init__(self, root, fast=1000, slow=16, login_msgs=5, login_size=2000,
                 retr_msgs=2000, retr_size=10240, big_msgs=0, big_size=2000):
        self.root = root
        self.uid = MAIL_UID if IS_ROOT else os.getuid()
        self.gid = MAIL_GID if IS_ROOT else os.getgid()
        self.fast = ["bench%04d" % i for i in range(fast)]
        self.slow = ["slow%02d" % i for i in range(slow)]
        self.retr = "retr0000"
        self.login_msgs, self.login_size = login_msgs, login_size
        self.retr_msgs, self.retr_size = retr_msgs, retr_size
        self.big_msgs, self.big_size = big_msgs, big_size
        # The users with a maildrop of their own size (retr, and big).
        self.bulk = [self.retr] + (["big0000", "retr0001", "big0001"] if big_msgs > 0 else [])
        self.password = {u: "pw-%s-%s" % (u, hashlib.sha256(u.encode()).hexdigest()[:8])
                         for u in self.fast + self.slow + self.bulk}
        self.home = {u: os.path.join(root, "home", u) for u in self.password}

    def build(self, hash_cache):
        t0 = time.monotonic()
        os.makedirs(os.path.join(self.root, "home"), exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(os.path.join(self.root, "home"), 0o755)
        for i, u in enumerate(self.fast + self.slow):
            make_maildir(self.home[u], self.login_msgs, self.login_size, i)
        self.retr_octets = make_maildir(self.home[self.retr], self.retr_msgs,
                                        self.retr_size, 99999)
        if self.big_msgs > 0:
            make_maildir(self.home["big0000"], self.big_msgs, self.big_size, 99998)
            make_maildir(self.home["retr0001"], self.retr_msgs, self.retr_size, 99997)
            make_maildir(self.home["big0001"], self.big_msgs, self.big_size, 99996)
        hashes = argon2_hashes([self.password[u] for u in self.fast + self.bulk], hash_cache)
        # The same users twice, for both servers (Dovecot's format is
        # ours): with argon2id hashes, and with {PLAIN} passwords, which
        # take the hash out of the measurement of the login path.
        self.passwd = {}
        # And SHA512-CRYPT ($6$, glibc's default 5,000 rounds), the scheme
        # of most system and Dovecot passwd-files.
        users = self.fast + self.bulk
        sha = subprocess.run(["openssl", "passwd", "-6", "-stdin"], check=True,
                             input="".join(self.password[u] + "\n" for u in users).encode(),
                             capture_output=True).stdout.decode().split()
        if len(sha) != len(users) or not all(h.startswith("$6$") for h in sha):
            raise RuntimeError("openssl passwd -6 gave %d hashes for %d users"
                               % (len(sha), len(users)))
        sha = dict(zip(users, sha))
        for scheme in ("argon2", "plain", "sha512"):
            p = self.passwd[scheme] = os.path.join(self.root, "users-%s.passwd" % scheme)
            with open(p, "w") as f:
                for u in self.fast + self.bulk:
                    pw = ("{ARGON2ID}" + hashes[self.password[u]] if scheme == "argon2"
                          else "{SHA512-CRYPT}" + sha[u] if scheme == "sha512"
                          else "{PLAIN}" + self.password[u])
                    f.write("%s:%s:%d:%d::%s::\n" % (u, pw, self.uid, self.gid, self.home[u]))
            os.chmod(p, 0o640)
        # Dovecot's userdb needs the slow users too (its checkpassword
        # passdb gives no uid/home).
        self.userdb = os.path.join(self.root, "users.userdb")
        with open(self.userdb, "w") as f:
            for u in self.fast + self.slow + self.bulk:
                f.write("%s::%d:%d::%s::\n" % (u, self.uid, self.gid, self.home[u]))
        os.chmod(self.userdb, 0o644)
        self.slow_db = os.path.join(self.root, "slow-users.db")
        with open(self.slow_db, "w") as f:
            for u in self.slow:
                f.write("%s %s %d %d %s\n" % (u, self.password[u], self.uid, self.gid,
                                              self.home[u]))
        os.chmod(self.slow_db, 0o644)
        # A self-signed certificate for the POP3S runs (both servers).
        self.tls_cert = os.path.join(self.root, "tls-cert.pem")
        self.tls_key = os.path.join(self.root, "tls-key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.tls_key,
                        "-out", self.tls_cert, "-days", "30", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        os.chmod(self.tls_key, 0o600)
        # pop3-load's user lists.
        self.load_fast = self._load_list("load-fast.txt", self.fast)
        self.load_slow = self._load_list("load-slow.txt", self.slow)
        self.load_retr = self._load_list("load-retr.txt", [self.retr])
        self.load_big = (self._load_list("load-big.txt", ["big0000"])
                         if self.big_msgs > 0 else None)
        self.load_retr_twins = (self._load_list("load-retr-twins.txt", ["retr0000", "retr0001"])
                                if self.big_msgs > 0 else None)
        self.load_big_twins = (self._load_list("load-big-twins.txt", ["big0000", "big0001"])
                               if self.big_msgs > 0 else None)
        log("data set: %d users x %d messages of ~%d B, %d slow users, "
            "1 maildrop of %d x ~%d B (%.1f MB) in %.1f s"
            % (len(self.fast), self.login_msgs, self.login_size, len(self.slow),
               self.retr_msgs, self.retr_size, self.retr_octets / 1e6, time.monotonic() - t0))

    def _load_list(self, name, users):
        p = os.path.join(self.root, name)
        with open(p, "w") as f:
            for u in users:
                f.write("%s %s\n" % (u, self.password[u]))
        return p


# ---- processes ----------------------------------------------------------------

def children_of(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(p))
    return out


def ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return 0


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children_of(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def memory_kib(pid):
    """(VmRSS, Pss) of pid in KiB: RSS from /proc/PID/status, PSS (shared
    pages divided among their users) from /proc/PID/smaps_rollup."""
    rss = pss = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def stop_pid(proc, name, timeout=30):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log("%s (pid %d) did not stop on SIGTERM; killing it" % (name, proc.pid))
        proc.kill()
        proc.wait()


# ---- our daemons ----------------------------------------------------------------

SLOW_HELPER = os.path.join(REPO, "bench", "slow-helper")


def set_keys(text, keys):
    """text (one section, or the sections up to [pop3d]'s end) with each
    key of keys set: its line replaced (the last one of that name), or
    added at the end."""
    for k, v in (keys or {}).items():
        lines = text.rstrip("\n").split("\n")
        at = [i for i, l in enumerate(lines) if l.split("=")[0].strip() == k]
        if at:
            lines[at[-1]] = "%s = %s" % (k, v)
        else:
            lines.append("%s = %s" % (k, v))
        text = "\n".join(lines) + "\n\n"
    return text


class Ours:
    """authd + pop3d on 127.0.0.1:port with a generated configuration.

    scheme     "argon2", "plain" or "sha512": which of the data set's passwd-files
    tls        also a POP3S listener (tls_port) with the data set's certificate
    cache      the credential cache on or off
    slow       add the slow helper (type = external, 2 s per answer) first
               in the chain, for the slow users
    pop3d_keys, auth_keys
               {key: value} set in [pop3d] and in the passwd-file
               authenticator's section (replacing the value here, if any)
    """

    name = "pop3d"

    def __init__(self, root, data, scheme="argon2", cache=True, slow=False, tls=False,
                 tag="ours", pop3d_keys=None, auth_keys=None):
        self.dir = os.path.join(root, tag)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.data = data
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.conf = os.path.join(self.dir, "pop3d.conf")
        self.authd = self.pop3d = None
        self.cache, self.slow, self.scheme = cache, slow, scheme
        chroot = os.path.join(self.dir, "empty")
        os.makedirs(chroot, exist_ok=True)
        os.chmod(chroot, 0o755)
        d = self.dir
        text = """# Generated by bench/benchlib.py.
[authd]
socket = {d}/auth.sock
master-socket = {d}/auth-master.sock
stats-socket = {d}/authd-stats.sock
log-level = info
log-target = file
log-file = {d}/authd.log

[cache]
enabled = {cache}
size = 16M
positive-ttl = 1h
negative-ttl = 1m

[pop3d]
listen = 127.0.0.1:{port}
auth-socket = {d}/auth.sock
master-auth-socket = {d}/auth-master.sock
maildrop = maildir:%h/Maildir
login-processes = 0
login-user = {login_user}
login-chroot = {chroot}
stats-socket = {d}/pop3d-stats.sock
log-level = info
log-target = file
log-file = {d}/pop3d.log
preauth-timeout = 5m
max-connections = 30000
max-connections-per-ip = 30000
max-sessions-per-user = 10
first-valid-uid = {first_uid}
{tls}
""".format(tls="" if not tls else
           "listen-tls = 127.0.0.1:%d\ntls-cert-file = %s\ntls-key-file = %s\n"
           % (self.tls_port, data.tls_cert, data.tls_key),d=d, cache="yes" if cache else "no", port=self.port, chroot=chroot,
           login_user="nobody" if IS_ROOT else pwd.getpwuid(os.getuid()).pw_name,
           first_uid=1000 if IS_ROOT else 1)
        text = set_keys(text, pop3d_keys)
        if slow:
            # First in the chain: fast users are cache hits and never get
            # here after the warm-up; an unknown user costs the helper a
            # dictionary lookup (NOUSER at once), a slow user 2 s.
            text += """[authenticator slow]
type = external
program = {helper} {db} 2
workers = 16
queue-limit = 256
per-source-limit = 256
timeout = 10s
cache = no

""".format(helper=SLOW_HELPER, db=data.slow_db)
        # Every load client comes from 127.0.0.1, one source for authd's
        # fair queues: its per-source-limit must not cap the bench.
        text += """[authenticator local]
type = passwd-file
path = {passwd}
workers = 4
hash-concurrency = {cores}
queue-limit = 1024
per-source-limit = 1024
timeout = 10s
cache = yes
""".format(passwd=data.passwd[scheme], cores=os.cpu_count() or 2)
        text = text[:text.index("[authenticator local]")] + set_keys(
            text[text.index("[authenticator local]"):], auth_keys)
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o600)

    def start(self):
        env = dict(os.environ)
        self.authd = subprocess.Popen([os.path.join(BUILD, "authd"), "-f", "-c", self.conf],
                                      stdout=subprocess.DEVNULL, stderr=open(
                                          os.path.join(self.dir, "authd.stderr"), "ab"),
                                      env=env)
        sock = os.path.join(self.dir, "auth.sock")
        wait_until(lambda: os.path.exists(sock) or self.authd.poll() is not None, 20, "authd")
        if self.authd.poll() is not None:
            raise RuntimeError("authd exited: see %s" % self.dir)
        self.pop3d = subprocess.Popen([os.path.join(BUILD, "pop3d"), "-f", "-c", self.conf],
                                      stdout=subprocess.DEVNULL, stderr=open(
                                          os.path.join(self.dir, "pop3d.stderr"), "ab"),
                                      env=env)
        wait_until(lambda: self.pop3d.poll() is not None or greets(self.port), 20, "pop3d")
        if self.pop3d.poll() is not None:
            raise RuntimeError("pop3d exited: see %s" % self.dir)
        wait_until(lambda: len(self.frontends()) >= 1, 10, "front ends")
        return self

    def frontends(self):
        """The master's children but sessions (spares of an earlier
        scenario may still wait for a login)."""
        if not self.pop3d:
            return []
        return [p for p in children_of(self.pop3d.pid)
                if not cmdline(p).startswith("pop3d: session")]

    def frontend_memory(self):
        """{'rss': KiB, 'pss': KiB, 'procs': n} summed over the front ends
        (the master's children other than sessions), and the master's."""
        rss = pss = n = 0
        for pid in self.frontends():
            r, p = memory_kib(pid)
            rss += r
            pss += p
            n += 1
        mr, mp = memory_kib(self.pop3d.pid)
        return {"rss": rss, "pss": pss, "procs": n, "master_rss": mr, "master_pss": mp}

    def master_pid(self):
        return self.pop3d.pid

    def root_pid(self):
        return self.pop3d.pid

    def extra_pids(self):
        """Processes outside root_pid's tree that serve logins: authd."""
        return [self.authd.pid]

    def authd_pid(self):
        return self.authd.pid

    def cpu_label(self, pid, comm):
        """(label for pid's own CPU, label for its exited children's)."""
        # Session processes live on between logins (session-reuse): a
        # live one is counted with the exited ones.
        if pid == self.pop3d.pid:
            return "pop3d master", "pop3d sessions"
        if cmdline(pid).startswith("pop3d: session"):
            return "pop3d sessions", "(grandchildren)"
        if pid == self.authd.pid:
            return "authd", "authd helpers (exited)"
        if ppid(pid) == self.pop3d.pid:
            return "pop3d front ends", "(grandchildren)"
        return comm, "exited children of " + comm

    def frontend_pids(self):
        return self.frontends()

    def stop(self):
        stop_pid(self.pop3d, "pop3d")
        stop_pid(self.authd, "authd")
        self.pop3d = self.authd = None

    def describe(self):
        return ("authd + pop3d, %d front ends (one per core), cache %s"
                % (os.cpu_count() or 2, "on (16M, positive-ttl 1h)" if self.cache else "off"))


# ---- pop3-load ------------------------------------------------------------------

class LoadResult(dict):
    pass


def run_load(args, label=None, stderr_path=None, check=True, timeout=None):
    """Runs pop3-load with args; returns its JSON line as a dict (with
    "cmd" added).  The progress lines go to stderr_path (or are dropped)."""
    cmd = [LOAD] + [str(a) for a in args]
    errf = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errf, timeout=timeout)
    finally:
        if stderr_path:
            errf.close()
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    if not lines:
        raise RuntimeError("pop3-load printed nothing: " + " ".join(cmd))
    res = LoadResult(json.loads(lines[-1]))
    res["cmd"] = cmd
    res["summary"] = "\n".join(lines[:-1])
    res["rc"] = r.returncode
    if label:
        log("%s: %.1f sessions/s, %d sessions, %d errors, login p50 %.2f ms p99 %.2f ms"
            % (label, res.get("sessions_per_s", 0), res.get("sessions", 0),
               res.get("error_total", 0), res.get("login_us", {}).get("p50", 0) / 1000,
               res.get("login_us", {}).get("p99", 0) / 1000))
    if check and "error" in res:
        raise RuntimeError("pop3-load: %s" % res["error"])
    return res


def shell_cmd(cmd, root):
    """A command line for the document: build paths relative, the
    temporary directory as $BENCH."""
    out = []
    for a in cmd:
        a = str(a).replace(root, "$BENCH").replace(REPO + "/", "")
        out.append(a)
    return " ".join(out)


def replace_section(path, begin, end, text, title=None):
    """Replaces the text between the begin and end marker lines of path
    (appending both, under title, if absent)."""
    old = open(path).read() if os.path.exists(path) else ""
    block = begin + "\n" + text.rstrip("\n") + "\n" + end
    if begin in old and end in old:
        pre = old[:old.index(begin)]
        post = old[old.index(end) + len(end):]
        new = pre + block + post
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + \
            ((title + "\n\n") if title else "") + block + "\n"
    with open(path, "w") as f:
        f.write(new)


def workdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


# ---- the saved results and their charts -------------------------------------------

def results_path(source):
    """Where source ("run-bench", "compare-dovecot") saves its last run's
    results: build/bench/SOURCE.json, read again by bench/plot-results."""
    return os.path.join(BUILD, "bench", source + ".json")


def save_results(source, m, res, **extra):
    """Writes the run's results (every pop3-load JSON line, as the
    scenarios returned them) with the machine description m and extra
    (secs, rounds, ...) to results_path(source); returns the metadata
    dict as written (plots.redraw takes it)."""
    path = results_path(source)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rel = os.path.relpath(path, REPO)
    meta = dict(extra, source=source, machine=m, results=res,
                json=path if rel.startswith("..") else rel)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, default=str)
    os.replace(tmp, path)
    # What was written, as bench/plot-results will read it.
    with open(path) as f:
        return json.load(f)


def draw_charts(meta, doc):
    """The charts of the run into img/ beside doc, their block in doc
    (bench/plots.py); a failure to draw is logged, never fatal: the
    tables are written and the results saved already."""
    import plots
    try:
        charts, err = plots.redraw(meta, doc, os.path.join(os.path.dirname(
            os.path.abspath(doc)), "img"))
    except Exception as e:      # noqa: BLE001 - any plotting bug: keep the run
        log("charts not drawn: %r; bench/plot-results %s retries" % (e, meta["json"]))
        return
    if err:
        log("charts not drawn: %s (scripts/install-deps --bench)" % err)
    else:
        log("%d charts drawn: %s" % (len(charts), ", ".join(c[0] for c in charts)))
