"""A strict parser of the Prometheus text exposition format (0.0.4), as
served by both daemons' stats sockets.  It raises ValueError on anything
a Prometheus server would reject or that breaks the format's rules:
unknown line shapes, samples without a preceding TYPE, bad names or label
syntax, duplicate series, non-cumulative histogram buckets, _count not
equal to the +Inf bucket."""

import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(r"^(%s)(?:\{(%s(?:,%s)*)?\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$"
                    % (NAME, LABEL, LABEL))
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse(text):
    """Returns {(name, frozenset(labels.items())): value} and {name: type}."""
    if not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    types, samples = {}, {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            if not re.match(r"^# HELP %s .*$" % NAME, line):
                raise ValueError("line %d: bad HELP: %r" % (n, line))
            continue
        if line.startswith("# TYPE "):
            m = re.match(r"^# TYPE (%s) (\w+)$" % NAME, line)
            if not m or m.group(2) not in TYPES:
                raise ValueError("line %d: bad TYPE: %r" % (n, line))
            if m.group(1) in types:
                raise ValueError("line %d: TYPE of %s given twice" % (n, m.group(1)))
            types[m.group(1)] = m.group(2)
            continue
        if line.startswith("#") or line == "":
            raise ValueError("line %d: unexpected %r" % (n, line))
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: bad sample: %r" % (n, line))
        name, labels, value = m.group(1), m.group(2), float(m.group(3))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in types and not (base in types and types[base] == "histogram"):
            raise ValueError("line %d: %s has no TYPE before it" % (n, name))
        lab = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
        key = (name, frozenset(lab.items()))
        if key in samples:
            raise ValueError("line %d: duplicate series %r" % (n, line))
        samples[key] = value
    # histograms: cumulative buckets, _count == +Inf
    for name, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for (sname, lab), v in samples.items():
            if sname == name + "_bucket":
                d = dict(lab)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append(
                    (float("inf") if le == "+Inf" else float(le), v))
        for lab, buckets in series.items():
            buckets.sort()
            vals = [v for _, v in buckets]
            if vals != sorted(vals):
                raise ValueError("%s%s: buckets not cumulative" % (name, dict(lab)))
            if buckets[-1][0] != float("inf"):
                raise ValueError("%s: no +Inf bucket" % name)
            if samples.get((name + "_count", lab)) != buckets[-1][1]:
                raise ValueError("%s: _count differs from the +Inf bucket" % name)
    return samples, types


def value(samples, name, **labels):
    """Sum of the series of name whose labels include the given ones."""
    total, found = 0.0, False
    for (n, lab), v in samples.items():
        if n == name and all(dict(lab).get(k) == str(x) for k, x in labels.items()):
            total += v
            found = True
    if not found:
        raise KeyError("%s %r not in the exposition" % (name, labels))
    return total
