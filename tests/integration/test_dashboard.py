"""The Grafana dashboard (conf/grafana/pop3d.json) and the alerting rules
example (conf/prometheus/alerts.yml) name only metrics and labels that the
real daemons export (issue 20, item 3): authd with its cache and the shared
L2 on a real memcached, and pop3d, are started and scraped, and every
selector and grouping of every expression is checked against that scrape.
`promtool check rules` runs where the Debian package prometheus is
installed."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO
from test_l2 import Memcached
from test_pop3d import mailroot, world  # noqa: F401 (fixtures)

DASHBOARD = os.path.join(REPO, "conf", "grafana", "pop3d.json")
ALERTS = os.path.join(REPO, "conf", "prometheus", "alerts.yml")
NAME = re.compile(r"\b((?:authd|pop3d)_[a-z0-9_]+)(\{[^}]*\})?")
BY = re.compile(r"\bby \(([\w, ]*)\)")


def exported(world, tmp_path):
    """{metric name: set of label names} from real scrapes of both daemons."""
    mc = Memcached()
    try:
        key = tmp_path / "cluster.key"
        key.write_bytes(os.urandom(32))
        os.chmod(key, 0o600)
        p = world(start=False)
        a = p.authd
        a.stop()
        text = open(a.conf).read().replace(
            "[cache]\nenabled = no\n",
            "[cache]\nenabled = yes\nmemcached = %s\ncluster-key-file = %s\n" % (mc.addr, key))
        open(a.conf, "w").write(text)
        a.start()
        p.start()
        out = {}
        for scrape in (a.scrape(), p.scrape()):
            for line in scrape.splitlines():
                if not line or line.startswith("#"):
                    continue
                m = re.match(r"([a-z_0-9]+)(?:\{([^}]*)\})?", line)
                labels = set(re.findall(r"(\w+)=\"", m.group(2) or ""))
                out.setdefault(m.group(1), set()).update(labels)
        return out
    finally:
        mc.close()


def expressions():
    dash = json.load(open(DASHBOARD))
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append(("dashboard: " + p["title"], t["expr"]))
    assert len(exprs) >= 15
    import yaml     # python3-yaml
    rules = yaml.safe_load(open(ALERTS))
    for g in rules["groups"]:
        for r in g["rules"]:
            exprs.append(("alert " + r["alert"], r["expr"]))
    return exprs


def base(name):
    return re.sub(r"_(bucket|sum|count)$", "", name)


def test_every_metric_and_label_exists(world, tmp_path):
    names = exported(world, tmp_path)
    hist = {base(n) for n in names if n.endswith("_bucket")}
    checked = 0
    for where, e in expressions():
        metrics = []
        for m in NAME.finditer(e):
            name = m.group(1)
            assert name in names, "%s: %s is not exported" % (where, name)
            metrics.append(name)
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2) or ""):
                if label in ("job", "instance"):
                    continue
                assert label in names[name], "%s: %s has no label %s" % (where, name, label)
                checked += 1
        # every "by (...)" label exists on the metrics it groups
        for m in BY.finditer(e):
            rest = e[m.end():]
            inner = NAME.search(rest)
            assert inner, (where, e)
            name = inner.group(1)
            for label in (x.strip() for x in m.group(1).split(",")):
                if not label or label in ("job", "instance"):
                    continue
                if label == "le":
                    assert base(name) in hist, "%s: %s is not a histogram" % (where, name)
                    continue
                assert label in names[name], "%s: %s has no label %s" % (where, name, label)
                checked += 1
        assert metrics or "up{" in e, (where, e)
    assert checked > 20


def test_dashboard_shape():
    dash = json.load(open(DASHBOARD))
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("logins", "queue depth", "hit ratio", "stale", "sessions", "bytes", "tls"):
        assert topic in titles, topic
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24


def test_promtool_check_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus); the metric "
                    "names are checked by test_every_metric_and_label_exists")
    r = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
