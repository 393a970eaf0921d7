"""A small client of the authd protocol (docs/auth-protocol.md) for tests."""

import base64
import os
import select
import socket
import time


def wait_until(cond, timeout, what="condition", interval=0.01):
    """Polls cond() until it is true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def recv_all(sock):
    """Everything sock receives until the peer closes (within its timeout)."""
    out = b""
    while True:
        d = sock.recv(65536)
        if not d:
            return out
        out += d


def proc_table():
    """{pid: (parent pid, state letter)} of every process /proc shows now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        out[int(pid)] = (int(fields[1]), fields[0])
    return out


def descendants(root):
    """root and every process below it, as /proc shows them now."""
    table = proc_table()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, (pp, _) in table.items() if pp == p]
    return out


def escape(s):
    return (s.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 1
            out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[s[i]])
        else:
            out.append(c)
        i += 1
    return "".join(out)


class Reply:
    def __init__(self, line):
        f = line.split("\t")
        self.cmd = f[0]
        self.id = f[1] if len(f) > 1 else None
        self.kv = {}
        for x in f[2:]:
            k, _, v = x.partition("=")
            self.kv[k] = unescape(v)

    def __repr__(self):
        return "Reply(%s %s %r)" % (self.cmd, self.id, self.kv)


class AuthdClient:
    def __init__(self, path, timeout=30, handshake=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.timeout = timeout
        self.next_id = 1
        if handshake:
            self.send_raw(b"VERSION\t1\t0\n")
            r = self.read_reply()
            assert r.cmd == "VERSION", r

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_auth(self, user, password, service="pop3", rid=None, **kv):
        if rid is None:
            rid = str(self.next_id)
            self.next_id += 1
        fields = ["AUTH", rid, "service=" + service, "user=" + escape(user),
                  "pass=" + escape(password)]
        fields += ["%s=%s" % (k, escape(v)) for k, v in kv.items()]
        self.send_raw(("\t".join(fields) + "\n").encode())
        return rid

    def send_plain(self, user, password, service="pop3", rid=None, authzid=""):
        if rid is None:
            rid = str(self.next_id)
            self.next_id += 1
        resp = base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()
        self.send_raw(("AUTH\t%s\tservice=%s\tmech=PLAIN\tresp=%s\n"
                       % (rid, service, resp)).encode())
        return rid

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                raise socket.timeout("no reply")
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("authd closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def read_reply(self, timeout=None):
        return Reply(self.read_line(timeout))

    def pending(self, timeout=0.0):
        """True if a reply line is already available within timeout."""
        if b"\n" in self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def auth(self, user, password, service="pop3", timeout=None, **kv):
        rid = self.send_auth(user, password, service, **kv)
        r = self.read_reply(timeout)
        assert r.id == rid, (rid, r)
        return r

    def closed(self, timeout=5):
        """True if authd closed this connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], deadline - time.monotonic())
            if r:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    return True
                if not data:
                    return True
                self.buf += data
        return False


def master_redeem(path, ticket, pid, rid="1"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rwb")
    f.write(b"VERSION\t1\t0\n")
    f.write(("REDEEM\t%s\tticket=%s\tpid=%d\n" % (rid, ticket, pid)).encode())
    f.flush()
    v = f.readline()
    assert v.startswith(b"VERSION\t1\t"), v
    r = Reply(f.readline().decode().rstrip("\n"))
    s.close()
    return r
