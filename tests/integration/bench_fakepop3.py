"""A scripted POP3 server on loopback for the pop3-load tests: correct by
default, and misbehaving on request (wrong sizes, missing terminator, early
close, slow or dribbled replies, bad status lines, refusals...).

    srv = FakePop3(messages=[b"...", ...], retr_size_delta=-5).start()
    ... srv.port ...
    srv.stop()

Each connection runs in its own thread; every socket wait is bounded so
that a test can always stop the server.  Knobs (all optional):

    greeting         the greeting line ("+OK fake ready"), or f() -> line
    silent           never send anything (accept and wait)
    close_after      close the connection after this command is received
                     ("greeting" = right after the greeting)
    pass_delay       f(user) -> seconds before the reply to PASS / AUTH
    reply_delay      seconds before every reply
    pass_reply       the reply to PASS / AUTH ("+OK Logged in"), or f(user) -> line
    stat_count_delta added to STAT's message count
    list_size_delta  added to every size LIST (and STAT's total) gives
    announce_delta   added to the octets of "+OK N octets" of RETR
    retr_size_delta  bytes removed (negative) from each RETR body
    no_terminator    RETR bodies without the final ".": the server then waits
    close_in_body    close half-way through the first RETR body
    dribble          send replies one byte every this many seconds
    bare_lf          end lines with LF instead of CRLF
    bad_status       the reply to STAT is this line
    no_close         keep the connection open after the +OK to QUIT
    tls              an ssl.SSLContext: implicit TLS from the first byte
    stls             an ssl.SSLContext offered through STLS
"""

import base64
import socket
import ssl
import threading
import time


def default_messages():
    """Three messages with CRLF line ends, one with lines that need dot-stuffing."""
    return [
        b"From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n",
        b"From: b@example.org\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.x\r\nend\r\n",
        b"From: c@example.org\r\nSubject: long\r\n\r\n" +
        b"".join(b"line %d of a longer message body\r\n" % i for i in range(500)),
    ]


class FakePop3:
    def __init__(self, messages=None, **knobs):
        self.messages = default_messages() if messages is None else messages
        self.k = knobs
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.threads = []
        self.lock = threading.Lock()
        self.sessions = 0
        self.logins = []

    def start(self):
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.acceptor = t
        return self

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self.acceptor.join(5)
        for t in list(self.threads):
            t.join(5)

    # ---- plumbing ----

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self.lock:
                self.threads = [x for x in self.threads if x.is_alive()]
                self.threads.append(t)
            t.start()

    def _wait(self, seconds):
        """Sleeps, but returns early (False) when the server stops."""
        return not self.stopping.wait(seconds)

    def _serve(self, conn):
        conn.settimeout(0.2)
        s = Session(self, conn)
        try:
            s.run()
        except (OSError, ssl.SSLError, _Stop):
            pass
        finally:
            try:
                s.conn.close()
            except OSError:
                pass


class _Stop(Exception):
    pass


class Session:
    def __init__(self, srv, conn):
        self.srv = srv
        self.k = srv.k
        self.conn = conn
        self.buf = b""
        self.user = None

    def send(self, data):
        if self.k.get("reply_delay"):
            if not self.srv._wait(self.k["reply_delay"]):
                raise _Stop()
        if self.k.get("dribble"):
            for i in range(len(data)):
                self.conn.sendall(data[i:i + 1])
                if not self.srv._wait(self.k["dribble"]):
                    raise _Stop()
            return
        self.conn.sendall(data)

    def line_end(self):
        return b"\n" if self.k.get("bare_lf") else b"\r\n"

    def reply(self, text):
        self.send(text.encode() + self.line_end())

    def read_line(self):
        while b"\r\n" not in self.buf:
            if self.srv.stopping.is_set():
                raise _Stop()
            try:
                d = self.conn.recv(4096)
            except socket.timeout:
                continue
            except ssl.SSLWantReadError:
                continue
            if not d:
                raise _Stop()
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("latin-1")

    def hold(self):
        """Waits until the client goes or the server stops."""
        while not self.srv.stopping.is_set():
            try:
                if not self.conn.recv(4096):
                    return
            except socket.timeout:
                continue
            except ssl.SSLWantReadError:
                continue
        raise _Stop()

    def stuffed(self, msg):
        out = []
        for line in msg.split(b"\r\n")[:-1]:
            out.append((b"." + line) if line.startswith(b".") else line)
        return self.line_end().join(out) + self.line_end()

    def run(self):
        k = self.k
        if k.get("tls") is not None:
            self.conn.settimeout(5)
            self.conn = k["tls"].wrap_socket(self.conn, server_side=True)
            self.conn.settimeout(0.2)
        if k.get("silent"):
            self.hold()
            return
        greeting = k.get("greeting", "+OK fake ready")
        greeting = greeting() if callable(greeting) else greeting
        self.reply(greeting)
        if k.get("close_after") == "greeting" or greeting.startswith("-ERR"):
            return
        msgs = self.srv.messages
        while True:
            line = self.read_line()
            cmd, _, arg = line.partition(" ")
            cmd = cmd.upper()
            if k.get("close_after") == cmd:
                return
            if cmd == "CAPA":
                self.send(b"+OK\r\nUSER\r\nUIDL\r\nSASL PLAIN\r\n" +
                          (b"STLS\r\n" if k.get("stls") else b"") + b".\r\n")
            elif cmd == "STLS" and k.get("stls") is not None:
                self.reply("+OK Begin TLS")
                self.conn.settimeout(5)
                self.conn = k["stls"].wrap_socket(self.conn, server_side=True)
                self.conn.settimeout(0.2)
            elif cmd == "USER":
                self.user = arg
                self.reply("+OK")
            elif cmd in ("PASS", "AUTH"):
                if cmd == "AUTH":
                    mech, _, resp = arg.partition(" ")
                    parts = base64.b64decode(resp).split(b"\0")
                    self.user = parts[1].decode()
                delay = k.get("pass_delay")
                if delay is not None and not self.srv._wait(delay(self.user)):
                    raise _Stop()
                with self.srv.lock:
                    self.srv.logins.append(self.user)
                reply = k.get("pass_reply", "+OK Logged in")
                self.reply(reply(self.user) if callable(reply) else reply)
            elif cmd == "STAT":
                if k.get("bad_status"):
                    self.reply(k["bad_status"])
                    continue
                # consistent with LIST, so that list_size_delta reaches RETR
                self.reply("+OK %d %d" % (len(msgs) + k.get("stat_count_delta", 0),
                                          sum(len(m) + k.get("list_size_delta", 0)
                                              for m in msgs)))
            elif cmd == "LIST":
                out = "+OK scan listing follows\r\n"
                for i, m in enumerate(msgs):
                    out += "%d %d\r\n" % (i + 1, len(m) + k.get("list_size_delta", 0))
                self.send(out.replace("\r\n", self.line_end().decode()).encode() +
                          b"." + self.line_end())
            elif cmd == "UIDL":
                out = "+OK\r\n" + "".join("%d uid-%04d\r\n" % (i + 1, i)
                                          for i in range(len(msgs)))
                self.send(out.encode() + b".\r\n")
            elif cmd == "RETR":
                m = msgs[int(arg) - 1]
                body = self.stuffed(m)
                if k.get("retr_size_delta"):
                    body = body[:k["retr_size_delta"]] + self.line_end()
                head = ("+OK %d octets" % (len(m) + k.get("announce_delta", 0))).encode()
                if k.get("close_in_body"):
                    self.send(head + self.line_end() + body[:len(body) // 2])
                    return
                self.send(head + self.line_end() + body)
                if k.get("no_terminator"):
                    self.hold()
                    return
                self.send(b"." + self.line_end())
            elif cmd == "NOOP":
                self.reply("+OK")
            elif cmd == "QUIT":
                self.reply("+OK bye")
                if k.get("no_close"):
                    self.hold()
                with self.srv.lock:
                    self.srv.sessions += 1
                return
            else:
                self.reply("-ERR unknown command")
