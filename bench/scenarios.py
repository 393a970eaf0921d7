"""scenarios.py - the standard benchmark scenarios, run with pop3-load
against any server object (benchlib.Ours, dovecot.Dovecot), and the
Markdown they turn into.

A server object has: name, port, start(), stop(), describe(),
frontend_memory() -> {"rss", "pss", "procs", ...} in KiB, root_pid() (the
process whose descendants are the server), and optionally
frontend_label.  Every scenario returns a dict of results with the exact
pop3-load command lines it ran."""

import os
import re
import shutil
import subprocess
import threading
import time

import benchlib as bl
from benchlib import log, run_load

# Durations (seconds) and sizes of the standard scenarios.
CONC = 32
SLOW_CONC = 16
FAST_CONC = 16
IDLE_CONNS = 10000
IDLE_RATE = 2000
# The concurrency sweep (logins/s against -c, the report's chart): cached
# {PLAIN} logins at each level for at most SWEEP_SECS (less with a
# shorter --secs), so that it adds about half a minute per server.
SWEEP_CONC = (1, 4, 16, 64)
SWEEP_SECS = 8
# "maildrop-open": the largest maildrop of the data set (DataSet's
# big_msgs; the 2,000-message one is the retrieval maildrop), and the
# length of each run.
BIG_MSGS = 20000
MAILDROP_OPEN_SECS = 6


# ---- CPU accounting -------------------------------------------------------------

def _ticks():
    return os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """(comm, own CPU s, reaped children's CPU s, own minor page faults,
    reaped children's, parent pid) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    comm = st[st.index("(") + 1:st.rindex(")")]
    fields = st[st.rindex(")") + 2:].split()
    # fields[7], [8]: minflt, cminflt; [11..14]: utime stime cutime cstime
    t = _ticks()
    own = (int(fields[11]) + int(fields[12])) / t
    children = (int(fields[13]) + int(fields[14])) / t
    return comm, own, children, int(fields[7]), int(fields[8]), int(fields[1])


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / _ticks()


class CpuMeter:
    """CPU seconds spent by a server's processes between start() and
    stop(), by role (srv.cpu_label); processes that exited in between
    (sessions) are counted through their parents' reaped-children time,
    less what those that already ran at start() had spent before it
    (processes that serve many sessions: Dovecot's pop3, our spares)."""

    def __init__(self, srv):
        self.srv = srv
        self.roots = [srv.root_pid()] + srv.extra_pids()

    def _snap(self):
        snap = {}
        for root in self.roots:
            for pid in [root] + bl.descendants(root):
                c = proc_cpu(pid)
                if c is not None:
                    snap[pid] = c
        return snap

    def start(self):
        self.t0 = time.monotonic()
        self.busy0 = machine_busy()
        self.s0 = self._snap()

    def stop(self):
        s1 = self._snap()
        self.wall = time.monotonic() - self.t0
        self.busy = machine_busy() - self.busy0
        by, faults = {}, {}
        for pid, (comm, own, ch, flt, cflt, _) in s1.items():
            before = self.s0.get(pid)
            same = before is not None and before[0] == comm
            d_own = own - (before[1] if same else 0)
            d_ch = ch - (before[2] if same else 0)
            d_flt = flt - (before[3] if same else 0)
            d_cflt = cflt - (before[4] if same else 0)
            own_label, ch_label = self.srv.cpu_label(pid, comm)
            by[own_label] = by.get(own_label, 0) + d_own
            faults[own_label] = faults.get(own_label, 0) + d_flt
            if d_ch > 0 or d_cflt > 0:
                by[ch_label] = by.get(ch_label, 0) + d_ch
                faults[ch_label] = faults.get(ch_label, 0) + d_cflt
        for pid, (comm, own, _, flt, _, parent) in self.s0.items():
            after = s1.get(pid)
            if after is not None and after[0] == comm:
                continue        # still running: counted above
            if parent not in s1:
                continue        # its parent's reaped time is not counted either
            _, ch_label = self.srv.cpu_label(parent, s1[parent][0])
            by[ch_label] = by.get(ch_label, 0) - own
            faults[ch_label] = faults.get(ch_label, 0) - flt
        # A plain dict, so that the run's saved JSON keeps it.
        return {"by": {k: v for k, v in by.items() if v > 0.0005}, "faults": faults,
                "busy": self.busy, "wall": self.wall}


# ---- helpers ----------------------------------------------------------------------

def base_args(srv):
    return ["--port", srv.port, "-q"]


def warm_up(srv, data, conc=CONC, rounds=10):
    """Every fast user logs in once (fills the cache and the servers' own
    per-user state: Dovecot's index files, our size cache).  A server may
    refuse part of a cold burst at once (authd's queue-wait-limit answers
    [SYS/TEMP] rather than queue past it): another round logs in those,
    the others being cache hits by then, until a round has no error (at
    most `rounds`)."""
    r = None
    for i in range(rounds):
        r = run_load(base_args(srv) + ["-c", conc, "-n", len(data.fast), "--users",
                                       data.load_fast, "--timeout", "30s"],
                     label="%s warm-up%s" % (srv.name, " (again)" if i else ""))
        if r.get("error_total", 0) == 0:
            break
    return r


def logins(srv, data, secs, conc=CONC, label="", meter=False):
    args = base_args(srv) + ["-c", conc, "-d", secs, "--users", data.load_fast]
    m = CpuMeter(srv) if meter else None
    if m:
        m.start()
    r = run_load(args, label="%s %s" % (srv.name, label))
    if m:
        r["cpu"] = m.stop()
    return r


def sweep_point(srv, data, conc, secs):
    """One level of the concurrency sweep: cached logins at -c conc for
    min(secs, SWEEP_SECS) seconds."""
    return logins(srv, data, min(secs, SWEEP_SECS), conc=conc, label="-c %d" % conc)


def concurrency_sweep(srv, data, secs, levels=SWEEP_CONC):
    """[[conc, result], ...] at each level of levels, in order."""
    return [[c, sweep_point(srv, data, c, secs)] for c in levels]


def logins_tls(srv, data, secs, conc=CONC, meter=False):
    """Cached logins over POP3S: a full TLS handshake per session (the
    client keeps no session for resumption)."""
    args = ["--port", srv.tls_port, "-q", "--tls", "implicit", "--tls-ca", data.tls_cert,
            "-c", conc, "-d", secs, "--users", data.load_fast]
    m = CpuMeter(srv) if meter else None
    if m:
        m.start()
    r = run_load(args, label="%s POP3S" % srv.name)
    if m:
        r["cpu"] = m.stop()
    return r


def isolation_pair(srv, data, secs, with_slow):
    args = base_args(srv) + ["-c", FAST_CONC, "-d", secs, "--users", data.load_fast]
    if with_slow:
        args += ["--slow-users", data.load_slow, "--slow-concurrency", SLOW_CONC]
    return run_load(args, label="%s isolation %s" % (srv.name, "with slow" if with_slow
                                                        else "alone"))


# RETR commands in flight: 1 as most clients do, then pipelined (RFC 2449
# PIPELINING, which both servers advertise), where the server's own cost
# per message shows instead of the round trip.
RETR_DEPTHS = (1, 4, 16)


def retrieval(srv, data, secs, depths=RETR_DEPTHS, warm=True):
    """{depth: result}: LIST + RETR of the whole retr maildrop, -c 1, for
    secs seconds at each pipeline depth, after one warm-up session."""
    if warm:
        run_load(base_args(srv) + ["-c", 1, "-n", 1, "--users", data.load_retr, "--script",
                                   "retr", "--timeout", "60s"],
                 label="%s retr warm-up" % srv.name)
    out = {}
    for depth in depths:
        args = base_args(srv) + ["-c", 1, "-d", secs, "--users", data.load_retr,
                                 "--script", "retr", "--pipeline", depth, "--timeout", "60s"]
        r = run_load(args, label="%s retr pipeline %d" % (srv.name, depth))
        log("%s retr pipeline %d: %.1f MB/s" % (srv.name, depth, r["retr_mb_per_s"]))
        out[depth] = r
    return out


def maildrop_open(srv, data, secs, warm=True):
    """"maildrop-open": {"twins": {messages: result}, "same": {messages:
    result}} for the 2,000-message maildrops and the 20,000-message ones:
    greeting, login, UIDL, QUIT (pop3-load's script `poll`, as a client
    that leaves its mail on the server polls; the maildrop is opened,
    listed and sized before the login's +OK, so STAT adds nothing to
    measure), -c 1, for secs seconds each, after one warm-up session per
    user (which lets each server build its index of the maildrop).
    "twins" alternates two users with maildrops of that size (a busy
    server's common case: other users' logins come in between);
    "same" polls one user again and again (a client polling every minute,
    served by the spare that served it last: pop3d's warm listing).  The
    time to compare is the session's (session_us): login + UIDL + QUIT."""
    out = {"twins": {}, "same": {}}
    for n, twins, one in ((data.retr_msgs, data.load_retr_twins, data.load_retr),
                          (data.big_msgs, data.load_big_twins, data.load_big)):
        if not one:
            continue
        for kind, users in (("twins", twins), ("same", one)):
            if not users:
                continue
            if warm:
                run_load(base_args(srv) + ["-c", 1, "-n", 2, "--users", users, "--script",
                                           "poll", "--timeout", "60s"],
                         label="%s maildrop-open %d %s warm-up" % (srv.name, n, kind))
            r = run_load(base_args(srv) + ["-c", 1, "-d", secs, "--users", users, "--script",
                                           "poll", "--timeout", "60s"],
                         label="%s maildrop-open %d %s" % (srv.name, n, kind))
            log("%s maildrop-open %d messages, %s: session p50 %.2f ms, p99 %.2f ms"
                % (srv.name, n, kind, r["session_us"]["p50"] / 1000,
                   r["session_us"]["p99"] / 1000))
            out[kind][n] = r
    return out


def idle_capacity(srv, conns=IDLE_CONNS, hold=8, rate=IDLE_RATE):
    """conns idle pre-auth connections; the front ends' memory with none
    and with all of them held."""
    bl.raise_nofile(conns * 2 + 1000)
    time.sleep(1)
    before = srv.frontend_memory()
    secs = conns / rate + hold + 15
    cmd = [bl.LOAD, "--port", str(srv.port), "-c", str(conns), "--rate", str(rate), "-d", str(int(secs)), "--script", "idle",
        "--timeout", "30s"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held = {"n": 0}

    def reader():
        for line in p.stderr:
            m = re.search(rb" (\d+) held,", line)
            if m:
                held["n"] = int(m.group(1))
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + secs
    while held["n"] < conns and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    time.sleep(hold / 2)        # let the front ends settle
    after = srv.frontend_memory()
    sock = sockstat()
    out, _ = p.communicate(timeout=secs + 120)
    t.join(5)
    import json
    r = json.loads(out.decode().strip().splitlines()[-1])
    r["cmd"] = cmd
    n = max(held["n"], 1)
    r["held_measured"] = held["n"]
    r["mem_before"], r["mem_after"] = before, after
    r["per_conn_rss"] = (after["rss"] - before["rss"]) * 1024 / n
    r["per_conn_pss"] = (after["pss"] - before["pss"]) * 1024 / n
    r["per_conn_master"] = (after.get("master_rss", 0) - before.get("master_rss", 0)) * 1024 / n
    r["sockstat"] = sock
    log("%s idle: %d held; front ends %d -> %d KiB RSS (%.0f B/conn), PSS %.0f B/conn"
        % (srv.name, held["n"], before["rss"], after["rss"], r["per_conn_rss"],
           r["per_conn_pss"]))
    return r


def sockstat():
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    p = line.split()
                    d = dict(zip(p[1::2], p[2::2]))
                    return {"inuse": int(d.get("inuse", 0)),
                            "mem_kib": int(d.get("mem", 0)) * os.sysconf("SC_PAGE_SIZE") // 1024}
    except OSError:
        pass
    return {}


# ---- where login time goes ---------------------------------------------------------

def profile_logins(srv, data, secs=8, outdir=None):
    """With the cache warm, two more runs of secs seconds: one under a
    system-wide `perf record` (samples attributed to the master, the front
    ends, the sessions, authd and the client by pid), one under
    `strace -c -f` on the pop3d master, which follows the sessions it
    forks.  Tools that are missing are skipped."""
    res = {}
    master = srv.master_pid()
    outdir = outdir or srv.dir
    if shutil.which("perf"):
        data_file = os.path.join(outdir, "perf.data")
        p = subprocess.Popen(["perf", "record", "-a", "-F", "999", "-o", data_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        fes = set(srv.frontend_pids())
        authd = srv.authd_pid()
        r = logins(srv, data, secs, label="under perf record -a")
        p.send_signal(2)
        p.wait(60)
        rep = subprocess.run(["perf", "script", "-i", data_file, "-F", "comm,pid,ip,sym,dso"],
                             capture_output=True, text=True, timeout=600)
        roles, syms, kroles, total = {}, {}, {}, 0
        for line in rep.stdout.splitlines():
            mt = re.match(r"\s*(.+?)\s+(\d+)\s+[0-9a-f]+\s+(.*?)\s*\(([^()]*)\)\s*$", line)
            if not mt:
                continue
            comm, pid, sym, dso = mt.group(1), int(mt.group(2)), mt.group(3), mt.group(4)
            kern = "kernel" in dso
            sym = sym or "[unknown]"
            if pid == master:
                role = "pop3d master"
            elif pid in fes:
                role = "pop3d front ends"
            elif pid == authd:
                role = "authd"
            elif comm == "pop3d":
                role = "pop3d sessions"
            elif comm == "pop3-load":
                role = "pop3-load"
            elif pid == 0:
                role = "idle"
            else:
                role = "other (%s)" % comm
            total += 1
            roles[role] = roles.get(role, 0) + 1
            kroles[role] = kroles.get(role, 0) + (1 if kern else 0)
            key = (role, ("[k] " if kern else "") + sym)
            syms[key] = syms.get(key, 0) + 1
        total = max(total, 1)
        res["perf_kernel_share"] = {k: 100.0 * kroles[k] / v for k, v in roles.items()}
        roles = {k: 100.0 * v / total for k, v in roles.items()}
        syms = {k: 100.0 * v / total for k, v in syms.items()}
        res["perf_roles"] = sorted(roles.items(), key=lambda kv: -kv[1])
        res["perf_syms"] = sorted(syms.items(), key=lambda kv: -kv[1])
        res["perf_sessions"] = r["sessions"]
    if shutil.which("strace"):
        out = os.path.join(outdir, "strace-c.txt")
        p = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(master)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = logins(srv, data, secs, label="under strace -c -f")
        p.send_signal(2)
        p.wait(60)
        rows = []
        for line in open(out):
            f = line.split()
            if len(f) >= 5 and re.match(r"[\d.]+$", f[0]) and f[-1] != "total":
                calls = int(f[3])
                errors = int(f[4]) if len(f) == 6 else 0
                rows.append((float(f[0]), float(f[1]), calls, errors, f[-1]))
        res["strace"] = rows
        res["strace_sessions"] = r["sessions"]
        res["strace_rate"] = r["sessions_per_s"]
    return res


# ---- Markdown ------------------------------------------------------------------------

def ms(us):
    return "%.2f" % (us / 1000.0)


def ratio(a, b):
    return "%.2f×" % (a / b) if b else "-"


def lat_row(r, key="login_us"):
    h = r[key]
    return "%s | %s | %s | %s | %s" % (ms(h["p50"]), ms(h["p90"]), ms(h["p99"]),
                                       ms(h["p999"]), ms(h["max"]))


def errors_text(r):
    e = {k: v for k, v in r["errors"].items() if v}
    if not e:
        return "0"
    return ", ".join("%s %d" % kv for kv in sorted(e.items()))


def commands_block(cmds, root):
    return "```sh\n" + "\n".join(bl.shell_cmd(c, root) for c in cmds) + "\n```\n"


def machine_text(m):
    out = "- Note: %s\n" % m["note"] if m.get("note") else ""
    out += ("- Date: %s; commit `%s`\n"
            "- Machine: %d cores, %s, %d MiB RAM, %s; load average (1 min) "
            "before the run %.2f\n"
            % (m["date"], m["commit"], m["cores"], m["cpu"], m["mem_mib"], m["os"], m["load"]))
    if "steal" in m:
        out += ("- CPU time taken by the hypervisor (steal, /proc/stat) during the run: "
                "%.1f %%\n" % m["steal"])
    return out


def cpu_table(r):
    """CPU per login by process name, from a metered run's result r (its
    "cpu": what a CpuMeter's stop() returned; the client's own CPU)."""
    cpu, sessions = r["cpu"], max(r["sessions"], 1)
    client_cpu = r["client_cpu_s"]["user"] + r["client_cpu_s"]["system"]
    rows = sorted(cpu["by"].items(), key=lambda kv: -kv[1])
    total = sum(v for _, v in rows) + client_cpu
    out = ("| process | CPU µs per login | share | minor page faults per login |\n"
           "|---|---:|---:|---:|\n")
    for name, v in rows:
        out += "| %s | %.0f | %.0f %% | %.1f |\n" % (name, v / sessions * 1e6, 100 * v / total,
                                                 cpu["faults"].get(name, 0) / sessions)
    out += "| pop3-load (the client) | %.0f | %.0f %% | |\n" % (
        client_cpu / sessions * 1e6, 100 * client_cpu / total)
    out += "| **all of the above** | **%.0f** | | |\n" % (total / sessions * 1e6)
    out += "| whole machine (/proc/stat, busy) | %.0f | %.0f %% of %d cores × %.1f s | |\n" % (
        cpu["busy"] / sessions * 1e6, 100 * cpu["busy"] / (os.cpu_count() * cpu["wall"]),
        os.cpu_count(), cpu["wall"])
    return out


def profile_text(prof):
    out = ""
    roles = prof.get("perf_roles")
    if roles:
        out += ("`perf record -a -F 999` (every CPU) during a %d-login run; samples by "
                "process role (pids of the master, front ends and authd known; every other "
                "`pop3d` pid is a session):\n\n| role | %% of all samples | of which in the kernel |\n"
                "|---|---:|---:|\n"
                % prof["perf_sessions"])
        for role, pct in roles:
            if pct >= 0.5:
                out += "| %s | %.1f | %.0f %% |\n" % (role, pct,
                                                      prof["perf_kernel_share"].get(role, 0))
        out += ("\nThe heaviest symbols of the master and the sessions ([k] = kernel), "
                "% of all samples:\n\n| role | symbol | % |\n|---|---|---:|\n")
        n = 0
        for (role, sym), pct in prof["perf_syms"]:
            if role in ("pop3d master", "pop3d sessions") and n < 30:
                out += "| %s | %s | %.1f |\n" % (role, sym, pct)
                n += 1
        out += "\n"
    st = prof.get("strace")
    if st:
        n = prof["strace_sessions"]
        out += ("`strace -c -f -p MASTER` during a %d-login run (%.0f logins/s under strace), "
                "system calls of the master and its sessions, by system time:\n\n"
                "| %% time | calls per login | errors per login | system call |\n"
                "|---:|---:|---:|---|\n" % (n, prof["strace_rate"]))
        for pct, secs, calls, errors, name in st[:18]:
            out += "| %.1f | %.2f | %.2f | %s |\n" % (pct, calls / n, errors / n, name)
        tot_calls = sum(r[2] for r in st)
        out += "| | **%.1f** | | all system calls |\n\n" % (tot_calls / n)
    return out
