#!/usr/bin/python3
"""A test helper for authd's `external` authenticator (NUL-framed protocol,
docs/external-helper.md).  Usage: ext_helper.py USERS PIDDIR

USERS holds lines "name:password[:uid[:home]]".  Behaviour by user name:
  slow<N>...  sleep N seconds before answering (e.g. slow30-1)
  hang...     never answer
  fork...     start a grandchild that sleeps, then never answer
  crash...    exit without answering
  garbage...  answer with bytes that break the framing
  tempfail... answer result=TEMPFAIL
Each helper process writes its pid to PIDDIR/helper.<pid> when it starts,
and appends the user name of every request to PIDDIR/calls.  While a file
PIDDIR/HANG exists every request hangs; PIDDIR/DELAY holds seconds to wait
before every answer."""

import os
import re
import subprocess
import sys
import time

users_path, piddir = sys.argv[1], sys.argv[2]
open(os.path.join(piddir, "helper.%d" % os.getpid()), "w").close()
inp = sys.stdin.buffer
out = sys.stdout.buffer


def load_users():
    users = {}
    with open(users_path) as f:
        for line in f:
            parts = line.rstrip("\n").split(":")
            if len(parts) >= 2:
                users[parts[0]] = parts[1:]
    return users


def read_request():
    recs, cur = [], b""
    while True:
        c = inp.read(1)
        if not c:
            return None
        if c == b"\0":
            if cur == b"":
                return dict(r.decode().split("=", 1) for r in recs)
            recs.append(cur)
            cur = b""
        else:
            cur += c


def reply(**kv):
    out.write(b"".join(("%s=%s" % (k, v)).encode() + b"\0" for k, v in kv.items()) + b"\0")
    out.flush()


while True:
    req = read_request()
    if req is None:
        sys.exit(0)
    user, pw = req["user"], req["password"]
    with open(os.path.join(piddir, "calls"), "a") as f:
        f.write(user + "\n")
    if os.path.exists(os.path.join(piddir, "HANG")):
        time.sleep(100000)
    try:
        with open(os.path.join(piddir, "DELAY")) as f:
            time.sleep(float(f.read()))
    except FileNotFoundError:
        pass
    m = re.match(r"slow(\d+(?:\.\d+)?)", user)
    if m:
        time.sleep(float(m.group(1)))
    elif user.startswith("hang"):
        time.sleep(100000)
    elif user.startswith("fork"):
        p = subprocess.Popen(["/bin/sleep", "100000"])
        open(os.path.join(piddir, "grandchild.%d" % p.pid), "w").close()
        time.sleep(100000)
    elif user.startswith("crash"):
        sys.exit(3)
    elif user.startswith("garbage"):
        out.write(b"this is not the protocol\n" * 3)
        out.flush()
        continue
    elif user.startswith("tempfail"):
        reply(result="TEMPFAIL")
        continue
    users = load_users()
    if user not in users:
        reply(result="NOUSER")
    elif users[user][0] != pw:
        reply(result="FAIL")
    else:
        fields = {"result": "OK"}
        if len(users[user]) > 1:
            fields["uid"] = users[user][1]
        if len(users[user]) > 2:
            fields["home"] = users[user][2]
        reply(**fields)
