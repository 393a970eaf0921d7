#!/usr/bin/python3
"""A qmail checkpassword program for tests.  Usage: checkpw.py USERS
Reads "user\\0password\\0timestamp\\0" from fd 3 (to end of file, as many
real ones do); USERS holds "name:password[:uid[:home]]" lines.  Users named
slow<N>... sleep N seconds first, temp... exit 111, weird... exit 3."""

import os
import re
import sys
import time

data = b""
while True:
    chunk = os.read(3, 512)
    if not chunk:
        break
    data += chunk
parts = data.split(b"\0")
user, pw = parts[0].decode(), parts[1].decode()
m = re.match(r"slow(\d+(?:\.\d+)?)", user)
if m:
    time.sleep(float(m.group(1)))
if user.startswith("temp"):
    sys.exit(111)
if user.startswith("weird"):
    sys.exit(3)
users = {}
with open(sys.argv[1]) as f:
    for line in f:
        p = line.rstrip("\n").split(":")
        users[p[0]] = p[1:]
if user not in users or users[user][0] != pw:
    sys.exit(1)
if len(users[user]) > 1:
    print("uid=%s" % users[user][1])
if len(users[user]) > 2:
    print("home=%s" % users[user][2])
sys.exit(0)
