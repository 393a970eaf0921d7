"""The chaos suite (issue 15, item 6): a load of logins, RETR, DELE and
QUIT from several clients, and mail delivered meanwhile, while the test
kills in turn authd, a front end, a session between DELE and QUIT, a spare
session process and the master, and freezes authd and the LDAP server.

What it checks (docs/reliability.md, "Chaos", has the figures of a long
run and what each fault promises):
- Mail: every message ever on disk (the initial ones and every delivery)
  is still there at the end, unless a session deleted it and its QUIT got
  "+OK"; every such message is gone; a DELE whose session never sent QUIT
  (killed, cut) was not applied.  A QUIT sent whose answer was lost may
  have gone either way: only those messages may be missing without a
  confirmation.
- Service comes back by itself where the daemons promise it (a front end,
  a spare, sessions that outlive their front end or master), or once the
  test, playing systemd (Restart=on-failure, RestartSec=1s in
  conf/systemd), starts a killed daemon again: no stale socket blocks the
  start.  Each recovery is timed and bounded.
- Freezes: while authd is stopped, sessions already open carry on, and a
  login waits at most for pop3d's auth timeout; while the LDAP server is
  stopped, passwd-file users and cached LDAP users log in as usual and an
  uncached LDAP user gets a prompt -ERR [SYS/TEMP] (the authenticator's
  timeout), not a hang.
- Leaks: once the load is over and everything is idle, the master, authd
  and each front end hold as many descriptors as before the load, the
  master's children are its front ends, and no process of the killed
  master is left.

make check runs a short round (CHAOS_SECONDS unset: each fault once, 4
clients).  `make chaos` runs rounds for CHAOS_SECONDS (with CHAOS_CLIENTS
clients) and prints the figures recorded in docs/reliability.md.
"""

import collections
import json
import os
import random
import re
import signal
import threading
import time

import pytest

from authdlib import wait_until
from conftest import BUILD, authctl
from pop3lib import IS_ROOT, TEST_GID, Client, MailRoot, Pop3d, user_uid
from test_ldap import SLAPD, Slapd, ldap_auth

LONG_SECONDS = float(os.environ.get("CHAOS_SECONDS", "0"))
CLIENTS = int(os.environ.get("CHAOS_CLIENTS", "8" if LONG_SECONDS else "4"))
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))   # at least
SANITIZED = os.path.basename(BUILD.rstrip("/")) in ("address", "thread", "undefined")
SLACK = 3.0 if SANITIZED else 1.5
# systemd's RestartSec in conf/systemd/*.service.in
RESTART_SEC = 1.0
# pop3d.h: POP3D_AUTH_TIMEOUT_MS, the longest a front end waits for authd
POP3D_AUTH_TIMEOUT = 30.0
# the LDAP authenticator's timeout here
LDAP_TIMEOUT = 1.0
# a client's wait for any one line: longer than the auth timeout, so a
# client sees what pop3d answers when authd is frozen
CLIENT_TIMEOUT = POP3D_AUTH_TIMEOUT + 15
# passwd-file users of the load; LDAP users of the load (directory.ldif)
LOAD_USERS = ["load%d" % i for i in range(12)]
LOAD_LDAP_USERS = ["user%02d" % i for i in range(4)]
# a cached LDAP user (logged in before the freeze, never by the load) and
# one whose cache entries are flushed before the freeze
LDAP_CACHED = "user10"
LDAP_UNCACHED = "user11"
INITIAL_MESSAGES = 8

pytestmark = pytest.mark.skipif(not os.path.exists(SLAPD), reason="no slapd")


def message(mid):
    return ("From: chaos@example.org\nSubject: chaos %s\n\nbody of %s\n.\n..dot\n"
            % (mid, mid)).encode()


MID = re.compile(rb"^Subject: chaos (\S+?)\r?$", re.M)


def title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return True
    return st[st.rindex(")") + 2] == "Z"


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def our_pop3d_processes():
    """pids of every process running this build's pop3d (whoever's child)."""
    exe = os.path.realpath(os.path.join(BUILD, "pop3d"))
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % pid) == exe:
                    out.append(int(pid))
            except OSError:
                pass
    return out


class Ledger:
    """Every message id and what happened to it, from the clients' side."""

    def __init__(self):
        self.lock = threading.Lock()
        self.expected = {}          # id -> user: initial and delivered
        self.confirmed = set()      # DELE +OK, then QUIT +OK
        self.ambiguous = set()      # DELE +OK, QUIT sent, answer lost
        self.unconfirmed = set()    # DELE +OK, QUIT never sent
        self.n = collections.Counter()
        self.unexpected = []        # answers no fault explains
        self.latency = []           # of successful logins

    def count(self, what, k=1):
        with self.lock:
            self.n[what] += k


class Chaos:
    def __init__(self, authd_factory, tmp_path, mailroot, slapd):
        self.tmp = tmp_path
        self.mailroot = mailroot
        self.slapd = slapd
        self.ledger = Ledger()
        self.stop_load = threading.Event()
        self.threads = []
        self.figures = collections.OrderedDict()
        self.recoveries = collections.defaultdict(list)
        self.maildirs = {}
        self.uids = {}
        self.seq = 0
        lines = ""
        for u in LOAD_USERS + ["probe", "victim", "frozen", "held", "update"]:
            md = mailroot.maildir(u)
            self.maildirs[u] = md
            lines += "%s:{PLAIN}%s-pw:%d:%d::%s::\n" % (
                u, u, user_uid(), TEST_GID if IS_ROOT else os.getgid(), os.path.dirname(md))
        for u in LOAD_LDAP_USERS + [LDAP_CACHED, LDAP_UNCACHED]:
            self.maildirs[u] = mailroot.maildir(u)
        for u in self.maildirs:
            for _ in range(INITIAL_MESSAGES if u != "probe" else 0):
                self.deliver(u)
        pw = tmp_path / "users"
        pw.write_text(lines)
        ldap = ldap_auth(slapd.uri, workers="1", timeout="%gs" % LDAP_TIMEOUT,
                         attributes="home=homeDirectory",
                         **{"default-uid": str(user_uid()),
                            "default-gid": str(TEST_GID if IS_ROOT else os.getgid()),
                            "default-maildrop": "maildir:%s/%%u/Maildir" % mailroot.path})
        self.authd = authd_factory([("files", {"type": "passwd-file", "path": str(pw)}),
                                    ("dir", ldap)], cache={})
        self.pop3d = Pop3d(self.authd, tmp_path, {
            "max-connections-per-ip": "200", "session-spare-timeout": "1s",
            "auth-failure-delay": "100ms"})
        self.pop3d.start()
        self.fe_count = 2

    # ---- mail -----------------------------------------------------------------------

    def deliver(self, user):
        """Delivers one message as an MDA does (tmp/, then new/); records
        it once it is in new/."""
        with self.ledger.lock:
            self.seq += 1
            mid = "%s-%d" % (user, self.seq)
        md = self.maildirs[user]
        name = "%d.M%dP%d.chaos" % (time.time(), self.seq, os.getpid())
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message(mid))
        if IS_ROOT:
            os.chown(tmp, user_uid(), TEST_GID)
        os.rename(tmp, os.path.join(md, "new", name))
        with self.ledger.lock:
            self.ledger.expected[mid] = user
            self.ledger.n["delivered"] += 1

    def on_disk(self):
        """{id: count} of the messages in every new/ and cur/, and the
        number of files left in tmp/ directories."""
        ids = collections.Counter()
        tmp = 0
        for md in self.maildirs.values():
            for sub in ("new", "cur"):
                for name in os.listdir(os.path.join(md, sub)):
                    with open(os.path.join(md, sub, name), "rb") as f:
                        m = MID.search(f.read())
                    ids[m.group(1).decode() if m else "?" + name] += 1
            tmp += len(os.listdir(os.path.join(md, "tmp")))
        return ids, tmp

    # ---- clients --------------------------------------------------------------------

    def login(self, user, password=None, timeout=CLIENT_TIMEOUT):
        """(client or None, answer, seconds) of one login."""
        t0 = time.monotonic()
        try:
            c = Client(self.pop3d.port, timeout=timeout)
        except (OSError, EOFError) as e:
            return None, "connect: %s" % e, time.monotonic() - t0
        try:
            if not c.greeting.startswith("+OK"):
                c.close()
                return None, c.greeting, time.monotonic() - t0
            r = c.cmd("USER " + user)
            if r.startswith("+OK"):
                r = c.cmd("PASS " + (password or user + "-pw"))
        except (OSError, EOFError) as e:
            c.close()
            return None, "cut: %s" % e, time.monotonic() - t0
        if not r.startswith("+OK"):
            c.close()
            return None, r, time.monotonic() - t0
        return c, r, time.monotonic() - t0

    def probe(self, user="probe", password=None):
        """True if user can log in and QUIT right now."""
        c, r, _ = self.login(user, password, timeout=10)
        if c is None:
            return False
        try:
            return c.cmd("QUIT").startswith("+OK")
        except (OSError, EOFError):
            return False
        finally:
            c.close()

    def one_session(self, user, rng):
        """One login, RETR and DELE of a few messages, QUIT; what happened
        goes in the ledger.  Returns False if the login failed."""
        L = self.ledger
        c, r, secs = self.login(user)
        if c is None:
            if r.startswith("-ERR [SYS/TEMP]"):
                L.count("login_tempfail")
            elif r.startswith("-ERR [IN-USE]"):
                L.count("login_in_use")
            elif r.startswith(("connect:", "cut:")):
                L.count("login_cut")
            else:
                L.count("unexpected")
                with L.lock:
                    L.unexpected.append((user, r))
            return False
        L.count("logins")
        with L.lock:
            L.latency.append(secs)
        dels = []
        phase = "transaction"
        try:
            n = int(c.cmd("STAT").split()[1])
            picks = rng.sample(range(1, n + 1), min(n, rng.randint(0, 3)))
            for i, m in enumerate(picks):
                r = c.cmd("RETR %d" % m)
                if not r.startswith("+OK"):
                    raise AssertionError("RETR %d: %s" % (m, r))
                found = MID.search(c.multiline())
                assert found, "RETR %d of %s: not one of ours" % (m, user)
                L.count("retrieved")
                if i < 2:       # the third is only read
                    r = c.cmd("DELE %d" % m)
                    if not r.startswith("+OK"):
                        raise AssertionError("DELE %d: %s" % (m, r))
                    dels.append(found.group(1).decode())
            phase = "quit"
            c.send("QUIT\r\n")
            r = c.line()
            with L.lock:
                if r.startswith("+OK"):
                    L.confirmed.update(dels)
                    L.n["deleted"] += len(dels)
                    L.n["quit_ok"] += 1
                else:
                    L.ambiguous.update(dels)
                    L.unexpected.append((user, "QUIT: " + r))
        except (OSError, EOFError):
            with L.lock:
                if phase == "quit":
                    L.ambiguous.update(dels)
                    L.n["quit_lost"] += 1
                else:
                    L.unconfirmed.update(dels)
                    L.n["dele_without_quit"] += len(dels)
                    L.n["session_cut"] += 1
        except AssertionError as e:
            with L.lock:
                L.unconfirmed.update(dels)
                L.unexpected.append((user, str(e)))
        finally:
            c.close()
        return True

    def client_loop(self, i):
        rng = random.Random(i)
        users = [u for j, u in enumerate(LOAD_USERS + LOAD_LDAP_USERS) if j % CLIENTS == i]
        while not self.stop_load.is_set():
            if not self.one_session(rng.choice(users), rng):
                self.stop_load.wait(0.02)   # a real client would not retry at once

    def open_session(self, user):
        """A session that has deleted its first message and not sent QUIT
        yet: (client, [id]) (no id if the maildrop was empty)."""
        c, r, _ = self.login(user, timeout=10)
        assert c is not None, r
        ids = []
        if int(c.cmd("STAT").split()[1]) > 0:
            assert c.cmd("RETR 1").startswith("+OK")
            ids.append(MID.search(c.multiline()).group(1).decode())
            assert c.cmd("DELE 1").startswith("+OK")
        return c, ids

    def finish_session(self, c, ids):
        """QUIT on a session of open_session: its DELE must be applied."""
        assert c.cmd("STAT").startswith("+OK")
        assert c.cmd("QUIT").startswith("+OK")
        c.close()
        with self.ledger.lock:
            self.ledger.confirmed.update(ids)
            self.ledger.n["held sessions finished"] += 1

    def deliver_loop(self):
        rng = random.Random(99)
        while not self.stop_load.wait(0.05):
            self.deliver(rng.choice(LOAD_USERS + LOAD_LDAP_USERS + ["victim", "held"]))

    def start_load(self):
        for i in range(CLIENTS):
            self.threads.append(threading.Thread(target=self.client_loop, args=(i,)))
        self.threads.append(threading.Thread(target=self.deliver_loop))
        for t in self.threads:
            t.start()

    def end_load(self):
        self.stop_load.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT * 3)
        assert not any(t.is_alive() for t in self.threads), "a client hung"

    def load_moves(self, n=3, timeout=30):
        """Waits until the load completes n more logins (service is up)."""
        k = self.ledger.n["logins"]
        wait_until(lambda: self.ledger.n["logins"] >= k + n, timeout,
                   "%d more logins of the load" % n, interval=0.02)

    def recovered(self, what, since, timeout, user="probe", password=None):
        """Polls with logins until one succeeds; records and returns the
        seconds since `since`."""
        wait_until(lambda: self.probe(user, password), timeout, "service after " + what,
                   interval=0.05)
        secs = time.monotonic() - since
        self.recoveries[what].append(secs)
        return secs

    # ---- processes ------------------------------------------------------------------

    def children(self):
        return {pid: title(pid) for pid, _ in self.pop3d.children()}

    def front_ends(self):
        return [pid for pid, t in self.children().items() if t.startswith("pop3d: login")]

    def quiet(self, timeout=30):
        """Waits until pop3d is idle: no connection, session or spare; the
        front ends all in service; only they are the master's children;
        no other process of this build's pop3d is left."""
        p = self.pop3d

        def idle():
            ok = (p.metric("pop3d_connections") == 0 and p.metric("pop3d_sessions") == 0 and
                  p.metric("pop3d_session_spares") == 0)
            kids = self.children()
            fes = [t for t in kids.values() if t.startswith("pop3d: login")]
            mine = set(our_pop3d_processes()) - {p.proc.pid} - set(kids)
            return ok and len(kids) == self.fe_count and len(fes) == self.fe_count \
                and not mine
        wait_until(idle, timeout, "pop3d idle (no session, spare or stray process)",
                   interval=0.1)

    def descriptors(self):
        try:
            authd = fds(self.authd.proc.pid)
        except PermissionError:
            # authd is never dumpable, so only root reads its /proc/PID/fd:
            # count its protocol clients instead
            authd = "%d clients" % self.authd.metric("authd_clients_connected")
        return {"master": fds(self.pop3d.proc.pid),
                "authd": authd,
                "front ends": sorted(fds(pid) for pid in self.front_ends()),
                "authd children": len(self.authd.children())}

    def warm(self):
        """One login of each kind, so that every lazy connection (the
        master's to authd, authd's to the directory) is open."""
        assert self.probe()
        assert self.probe(LDAP_CACHED)
        c, r, _ = self.login(LDAP_CACHED, "wrong-%d" % random.getrandbits(32), timeout=10)
        assert c is None and r.startswith("-ERR [AUTH]"), r

    # ---- faults ---------------------------------------------------------------------

    def kill_authd(self):
        a = self.authd
        held = self.open_session("held")
        t0 = time.monotonic()
        a.proc.kill()
        a.proc.wait()
        a.stop(check=False)
        # logins fail while it is down; sessions carry on
        self.finish_session(*held)
        time.sleep(RESTART_SEC)         # systemd's RestartSec: a real pause
        t1 = time.monotonic()
        a.start()                       # over the socket files left behind
        self.figures.setdefault("authd start after SIGKILL (s)", []).append(
            time.monotonic() - t1)
        # a front end reconnects (or, chrooted, is replaced) with a
        # back-off of at most POP3D_RESTART_MAX_MS
        self.recovered("authd killed, restarted (from restart)", t1, 5 + 2 * SLACK)
        self.recoveries["authd killed (from kill)"].append(time.monotonic() - t0)

    def kill_front_end(self):
        held = self.open_session("held")    # through one of them
        # not one retiring (replaced after authd's restart): one in service
        victim = wait_until(lambda: len(self.front_ends()) == self.fe_count and
                            self.front_ends()[0], 10, "front ends in service")
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        self.recovered("front end killed: logins", t0, SLACK)   # the other one
        self.finish_session(*held)

        def replaced():
            fes = self.front_ends()
            return victim not in fes and len(fes) == self.fe_count
        # the restart back-off: at most POP3D_RESTART_MAX_MS
        wait_until(replaced, 5 + SLACK, "the killed front end replaced", interval=0.02)
        self.recoveries["front end killed: replaced"].append(time.monotonic() - t0)

    def kill_session_between_dele_and_quit(self):
        c, r, _ = self.login("victim", timeout=10)
        assert c is not None, r
        n = int(c.cmd("STAT").split()[1])
        dels = []
        for m in range(1, n + 1):
            assert c.cmd("RETR %d" % m).startswith("+OK")
            dels.append(MID.search(c.multiline()).group(1).decode())
            assert c.cmd("DELE %d" % m).startswith("+OK")
        pids = [pid for pid, t in self.children().items()
                if t.startswith("pop3d: session victim ")]
        assert len(pids) == 1, self.children()
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: gone(pids[0]), 10, "the session killed")
        with pytest.raises((OSError, EOFError)):
            c.cmd("QUIT")
        c.close()
        with self.ledger.lock:
            self.ledger.unconfirmed.update(dels)
            self.ledger.n["dele_without_quit"] += len(dels)
        # no stale lock, nothing deleted
        t0 = time.monotonic()
        c, r, _ = self.login("victim", timeout=10)
        assert c is not None, r
        self.recoveries["session killed: its user logs in again"].append(
            time.monotonic() - t0)
        assert int(c.cmd("STAT").split()[1]) >= n
        assert c.cmd("QUIT").startswith("+OK")
        c.close()

    def kill_session_in_update(self):
        """A session killed in the middle of its UPDATE (once the first of
        its changes shows in new/): the messages it did not DELE must all
        stay, those it only retrieved included (they are being moved to
        cur/); those it DELEd may have gone or not."""
        md = self.maildirs["update"]
        for _ in range(120 - len(os.listdir(os.path.join(md, "new")))):
            self.deliver("update")
        c, r, _ = self.login("update", timeout=10)
        assert c is not None, r
        c.send("UIDL\r\n")
        assert c.line().startswith("+OK")
        uidl = dict(x.split() for x in c.multiline().decode().splitlines())
        ids = {}
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(md, sub)):
                with open(os.path.join(md, sub, name), "rb") as f:
                    ids[name.split(":")[0]] = MID.search(f.read()).group(1).decode()
        dels = [ids[u] for m, u in uidl.items() if int(m) % 2]
        retrs = [m for m in uidl if int(m) % 4 == 0]
        # pipelined (RFC 2449 PIPELINING): the DELEs, then a few RETRs
        c.send("".join("DELE %s\r\n" % m for m in uidl if int(m) % 2) +
               "".join("RETR %s\r\n" % m for m in retrs))
        for m in uidl:
            if int(m) % 2:
                assert c.line().startswith("+OK")
        for m in retrs:
            assert c.line().startswith("+OK")
            c.multiline()
        pids = [pid for pid, t in self.children().items()
                if t.startswith("pop3d: session update ")]
        assert len(pids) == 1, self.children()
        before = sorted(os.listdir(os.path.join(md, "new")))
        c.send("QUIT\r\n")
        deadline = time.monotonic() + 5
        while sorted(os.listdir(os.path.join(md, "new"))) == before and \
                time.monotonic() < deadline:
            pass        # no sleep: the UPDATE takes milliseconds
        os.kill(pids[0], signal.SIGKILL)
        try:
            r = c.line(timeout=10)
        except (OSError, EOFError):
            r = ""
        c.close()
        wait_until(lambda: gone(pids[0]), 10, "the session killed")
        with self.ledger.lock:
            if r.startswith("+OK"):
                self.ledger.confirmed.update(dels)
            else:
                self.ledger.ambiguous.update(dels)
        on_disk, tmp = self.on_disk()
        done = sum(1 for x in dels if x not in on_disk)
        self.figures.setdefault("session killed in UPDATE: DELEs applied/DELEs",
                                []).append("%d/%d%s" % (done, len(dels),
                                                        " (+OK)" if r.startswith("+OK") else ""))
        assert self.probe("update")     # no stale lock

    def kill_spare(self):
        def spare():
            s = [pid for pid, t in self.children().items() if t == "pop3d: session (spare)"]
            return s[0] if s else None
        pid = wait_until(spare, 20, "a spare session process", interval=0.01)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self.recovered("spare killed", t0, SLACK)
        self.load_moves()

    def kill_master(self):
        p = self.pop3d
        held = self.open_session("held")    # maybe in a spare: listed after
        kids = self.children()
        fes = [pid for pid, t in kids.items() if t.startswith("pop3d: login")]
        spares = [pid for pid, t in kids.items() if t == "pop3d: session (spare)"]
        t0 = time.monotonic()
        p.proc.kill()
        p.proc.wait()
        p.logf.close()
        # its front ends and spares see their channel close and leave by
        # themselves; sessions with a client carry on, and their QUIT
        # still applies their DELEs
        try:
            wait_until(lambda: all(gone(x) for x in fes + spares), 10,
                       "front ends and spares of the killed master gone", interval=0.02)
        except AssertionError:
            left = {x: (title(x), open("/proc/%d/stat" % x).read().split()[2],
                        open("/proc/%d/wchan" % x).read())
                    for x in fes + spares if not gone(x)}
            raise AssertionError("left: %r" % left)
        self.recoveries["master killed: its front ends and spares exit"].append(
            time.monotonic() - t0)
        self.finish_session(*held)
        time.sleep(RESTART_SEC)         # systemd's RestartSec
        t1 = time.monotonic()
        p.start(wait=False)             # same port, same stats socket path
        self.recovered("master killed, restarted (from restart)", t1, 2 + 2 * SLACK)
        self.recoveries["master killed (from kill)"].append(time.monotonic() - t0)

    def freeze_authd(self, seconds):
        """authd stopped: an open session carries on; a login waits, and
        gets its answer after the thaw (or [SYS/TEMP] at pop3d's auth
        timeout, whichever comes first)."""
        c, r, _ = self.login("frozen", timeout=10)
        assert c is not None, r
        waiter = {}

        def wait_login():
            waiter["t0"] = time.monotonic()
            x, r, secs = self.login("probe")
            waiter["answer"], waiter["secs"] = r, secs
            if x is not None:
                x.cmd("QUIT")
                x.close()
        self.authd.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            th = threading.Thread(target=wait_login)
            th.start()
            # the open session does not need authd
            n = int(c.cmd("STAT").split()[1])
            if n:
                assert c.cmd("RETR 1").startswith("+OK")
                mid = MID.search(c.multiline()).group(1).decode()
                assert c.cmd("DELE 1").startswith("+OK")
            assert c.cmd("QUIT").startswith("+OK")
            if n:
                with self.ledger.lock:
                    self.ledger.confirmed.add(mid)
            c.close()
            self.figures.setdefault("authd frozen: open session served (s)", []).append(
                time.monotonic() - t0)
            th.join(max(0, seconds - (time.monotonic() - t0)))
        finally:
            self.authd.proc.send_signal(signal.SIGCONT)
        t1 = time.monotonic()
        th.join(CLIENT_TIMEOUT)
        assert not th.is_alive(), "a login hung after authd's thaw"
        waited = waiter["secs"]
        if seconds < POP3D_AUTH_TIMEOUT - SLACK:
            assert waiter["answer"].startswith("+OK"), waiter
            assert waiter["t0"] + waited - t1 < SLACK, "login done %.1fs after the thaw" % (
                waiter["t0"] + waited - t1)
        else:
            assert waiter["answer"].startswith("-ERR [SYS/TEMP]"), waiter
            assert POP3D_AUTH_TIMEOUT - 1 < waited < POP3D_AUTH_TIMEOUT + SLACK, waited
        self.figures.setdefault("authd frozen %gs: login waited (s)" % seconds, []).append(
            waited)
        self.recovered("authd frozen %gs (from thaw)" % seconds, t1, SLACK)

    def freeze_slapd(self, seconds):
        """The directory stopped: other users are not affected, cached
        ones neither; an uncached directory user gets a prompt
        [SYS/TEMP]."""
        uncached = LDAP_UNCACHED
        assert self.probe(LDAP_CACHED)      # cached by this authd (a restart empties it)
        r = authctl("-s", self.authd.socket, "flush", uncached)
        assert r.returncode == 0, r.stderr
        self.slapd.freeze()
        t0 = time.monotonic()
        try:
            c, r, secs = self.login(uncached)
            if c is not None:
                self.diagnose_login(c, r, uncached)
            assert r.startswith("-ERR [SYS/TEMP]"), r
            assert secs < LDAP_TIMEOUT + SLACK, secs
            self.figures.setdefault("LDAP frozen: uncached user's [SYS/TEMP] (s)",
                                    []).append(secs)
            for user, what in (("probe", "passwd-file user"), (LDAP_CACHED, "cached LDAP user")):
                c, r, secs = self.login(user)
                assert c is not None, (user, r)
                assert secs < SLACK, (user, secs)
                c.cmd("QUIT")
                c.close()
                self.figures.setdefault("LDAP frozen: %s login (s)" % what, []).append(secs)
            left = seconds - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)        # the fault's length: the load runs on
        finally:
            self.slapd.thaw()
        t1 = time.monotonic()
        # the directory connection's back-off (at most 5 s), then a search
        # and a bind
        self.recovered("LDAP frozen %gs (from thaw)" % seconds, t1, 5 + LDAP_TIMEOUT + SLACK,
                       uncached)

    def diagnose_login(self, c, r, user):
        """A login that should have failed did not: whose maildrop is it,
        and what did the daemons log about it."""
        c.send("UIDL\r\n")
        c.line()
        uidls = sorted(x.split()[1] for x in c.multiline().decode().splitlines())
        owners = [u for u, md in self.maildirs.items()
                  if sorted(n.split(":")[0] for sub in ("new", "cur")
                            for n in os.listdir(os.path.join(md, sub))) == uidls]
        lines = [x for x in (self.pop3d.log_text() + self.authd.log_text() +
                             self.slapd.log_text()).splitlines()
                 if re.search(r"user1[01]\b", x)]
        raise AssertionError("%s logged in (%s) while it should not; the maildrop is %s's;"
                             " log:\n%s" % (user, r, owners, "\n".join(lines[-40:])))

    # ---- the run --------------------------------------------------------------------

    def check_mail(self):
        L = self.ledger
        ids, tmp = self.on_disk()
        expected = set(L.expected)
        present = set(ids)
        lost = expected - present - L.confirmed - L.ambiguous
        resurrected = L.confirmed & present
        kept = L.unconfirmed - L.confirmed - L.ambiguous
        self.figures["messages delivered during the run"] = L.n["delivered"] - \
            INITIAL_MESSAGES * (len(self.maildirs) - 1)
        self.figures["messages deleted (DELE, QUIT +OK)"] = len(L.confirmed)
        self.figures["messages DELEd, session cut before QUIT, kept"] = len(kept)
        self.figures["messages DELEd, QUIT answer lost"] = len(L.ambiguous)
        self.figures["messages on disk at the end"] = sum(ids.values())
        self.figures["files left in tmp/"] = tmp
        assert not lost, "lost: %s" % sorted(lost)
        assert not resurrected, "confirmed DELE but still there: %s" % sorted(resurrected)
        assert not (kept - present), "DELE applied without QUIT: %s" % sorted(kept - present)
        assert present <= expected, "unknown files: %s" % sorted(present - expected)
        dup = [k for k, v in ids.items() if v > 1]
        assert not dup, "duplicated: %s" % dup

    def report(self):
        L = self.ledger
        lat = sorted(L.latency)
        f = collections.OrderedDict()
        f["clients"] = CLIENTS
        f["logins ok"] = L.n["logins"]
        f["logins p50/p99 (ms)"] = "%.0f/%.0f" % (1000 * lat[len(lat) // 2],
                                                 1000 * lat[int(len(lat) * 0.99)])
        for k in ("login_tempfail", "login_in_use", "login_cut", "session_cut", "quit_ok",
                  "quit_lost", "retrieved", "held sessions finished"):
            f[k.replace("_", " ")] = L.n[k]
        f.update(self.figures)
        for what, secs in self.recoveries.items():
            f["recovery: " + what] = secs
        return f


@pytest.fixture
def chaos(authd_factory, tmp_path):
    mailroot = MailRoot()
    slapd = Slapd(tmp_path / "slapd").start()
    ch = None
    try:
        ch = Chaos(authd_factory, tmp_path, mailroot, slapd)
        yield ch
    finally:
        if ch is not None:
            ch.stop_load.set()
            if ch.authd.proc is not None and ch.authd.proc.poll() is None:
                ch.authd.proc.send_signal(signal.SIGCONT)
            ch.pop3d.stop()
        slapd.kill()
        mailroot.cleanup()


def fmt(v):
    if isinstance(v, list) and v and isinstance(v[0], str):
        return ", ".join(v)
    if isinstance(v, list):
        if not v:
            return "-"
        if isinstance(v[0], float):
            return "%.2f (max %.2f, n=%d)" % (sum(v) / len(v), max(v), len(v)) \
                if len(v) > 1 else "%.2f" % v[0]
    if isinstance(v, float):
        return "%.2f" % v
    return str(v)


def test_chaos(chaos):
    ch = chaos
    ch.warm()
    ch.quiet()
    before = ch.descriptors()
    ch.start_load()
    t_start = time.monotonic()
    rounds = 0
    try:
        ch.load_moves(5)
        while True:
            rounds += 1
            for fault in (ch.kill_authd, ch.kill_front_end,
                          ch.kill_session_between_dele_and_quit,
                          ch.kill_session_in_update, ch.kill_spare,
                          ch.kill_master):
                fault()
                ch.load_moves()
            # the first long round waits out pop3d's auth timeout
            ch.freeze_authd(POP3D_AUTH_TIMEOUT + 3 if LONG_SECONDS >= 60 and rounds == 1 else 2)
            ch.load_moves()
            ch.freeze_slapd(5 if LONG_SECONDS else 2)
            ch.load_moves()
            if time.monotonic() - t_start >= LONG_SECONDS and rounds >= ROUNDS:
                break
    finally:
        ch.end_load()
    ch.figures["rounds"] = rounds
    ch.figures["seconds of load"] = time.monotonic() - t_start
    ch.check_mail()
    # every lazy connection open again, then idle: nothing leaked
    ch.warm()
    ch.quiet()

    def same():
        return ch.descriptors() == before
    try:
        wait_until(same, 10, "descriptors as before the load")
    except AssertionError:
        raise AssertionError("descriptors before %s, after %s" % (before, ch.descriptors()))
    ch.figures["descriptors (master, authd, front ends), before = after"] = \
        "%s, %s, %s" % (before["master"], before["authd"], before["front ends"])
    assert ch.ledger.unexpected == [], ch.ledger.unexpected
    f = ch.report()
    print("\nchaos figures (%s, %s):" % ("root" if IS_ROOT else "uid %d" % os.getuid(),
                                         os.path.basename(BUILD.rstrip("/"))))
    for k, v in f.items():
        print("  %-60s %s" % (k, fmt(v)))
    print("CHAOS " + json.dumps({k: v for k, v in f.items()}))
