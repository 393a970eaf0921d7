"""bench/plot-results and bench/plots.py: the benchmark report's charts,
drawn from a results file of the shape bench/run-bench and
bench/compare-dovecot save, made here of real pop3-load JSON lines
against the scripted fake server (bench_fakepop3.py), so that the charts
read exactly what pop3-load prints.  The PNGs must be 800 x 450 and at
most 100 KB, their block in the document replaced in place (nothing else
changed, the same text when redrawn); without matplotlib the tool says so
and the block says how to draw them later.  The drawing tests are skipped
where python3-matplotlib is missing (it comes with `scripts/install-deps
--bench`, which `make check` does not run)."""

import json
import os
import struct
import subprocess
import sys

import pytest

from bench_fakepop3 import FakePop3
from conftest import BUILD, REPO

LOAD = os.path.join(BUILD, "pop3-load")
PLOT = os.path.join(REPO, "bench", "plot-results")
sys.path.insert(0, os.path.join(REPO, "bench"))
import plots  # noqa: E402


def have_matplotlib():
    return subprocess.run([sys.executable, "-c", "import matplotlib"],
                          capture_output=True).returncode == 0


needs_mpl = pytest.mark.skipif(not have_matplotlib(),
                               reason="python3-matplotlib is missing "
                                      "(scripts/install-deps --bench)")


def load(port, users, *args):
    r = subprocess.run([LOAD, "--port", str(port), "-q", "--users", users] +
                       [str(a) for a in args], capture_output=True, timeout=60)
    res = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert res["error_total"] == 0, res
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real pop3-load results: a "fast" and a "slow" server (PASS after
    2 ms and 6 ms), each for the login, sweep and isolation scenarios."""
    d = tmp_path_factory.mktemp("plots")
    fast = d / "fast.txt"
    fast.write_text("".join("f%03d pw\n" % i for i in range(20)))
    slow = d / "slow.txt"
    slow.write_text("s00 pw\ns01 pw\n")
    out = {}
    for name, delay in ((plots.O, 0.002), (plots.D, 0.006)):
        srv = FakePop3(pass_delay=lambda u, dl=delay: 0.3 if u.startswith("s") else dl).start()
        try:
            r = {"plain": [load(srv.port, fast, "-c", 4, "-n", 60)],
                 "argon2": [load(srv.port, fast, "-c", 4, "-n", 30)],
                 "sweep": [[c, load(srv.port, fast, "-c", c, "-n", 8 * c)] for c in (1, 4)],
                 "isolation": [[load(srv.port, fast, "-c", 2, "-n", 20),
                                load(srv.port, fast, "-c", 2, "-n", 20, "--slow-users", slow,
                                     "--slow-concurrency", 1)]]}
        finally:
            srv.stop()
        out[name] = r
    return out


def compare_file(runs, path):
    res = {k: {srv: runs[srv][k] for srv in runs} for k in ("plain", "argon2", "sweep",
                                                            "isolation")}
    meta = {"source": "compare-dovecot", "results": res, "secs": 1, "rounds": 1, "conc": 4,
            "sweep_secs": 1, "json": "build/bench/compare-dovecot.json",
            "machine": {"date": "2026-01-02 03:04 UTC", "commit": "0123456789ab", "cores": 2,
                        "note": "a test"}}
    path.write_text(json.dumps(meta))
    return path


def bench_file(runs, path):
    r = runs[plots.O]
    res = {"plain": r["plain"][0], "argon2": r["argon2"][0], "tls": r["plain"][0],
           "uncached": r["argon2"][0], "sweep": r["sweep"], "isolation": r["isolation"]}
    meta = {"source": "run-bench", "results": res, "secs": 1, "conc": 4, "sweep_secs": 1,
            "json": "build/bench/run-bench.json",
            "machine": {"date": "2026-01-02 03:04 UTC", "commit": "0123456789ab", "cores": 2}}
    path.write_text(json.dumps(meta))
    return path


DOC = ("# Benchmarks\n\nprose\n\n"
       "<!-- BEGIN make-bench: x -->\n### Results\n\n%s\n\n#### Logins\n\ntable\n"
       "<!-- END make-bench -->\n\nmore prose\n\n"
       "<!-- BEGIN compare-dovecot: x -->\n### Side by side\n\n%s\n\ntable\n"
       "<!-- END compare-dovecot -->\n\n## Floods\n\nother section\n"
       % (plots.placeholder("run-bench"), plots.placeholder("compare-dovecot")))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def plot(results, doc, env=None):
    return subprocess.run([sys.executable, PLOT, "--out", str(doc), str(results)],
                          capture_output=True, text=True, timeout=120, env=env)


@needs_mpl
@pytest.mark.parametrize("shape", ["compare-dovecot", "run-bench"])
def test_charts_drawn_and_embedded(runs, tmp_path, shape):
    results = (compare_file if shape == "compare-dovecot" else bench_file)(
        runs, tmp_path / "results.json")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    r = plot(results, doc)
    assert r.returncode == 0, r.stderr
    pre = plots.PREFIX[shape]
    names = [pre + "-login-cdf.png", pre + "-concurrency.png", pre + "-isolation.png"]
    for n in names:
        p = tmp_path / "img" / n
        assert png_size(p) == (800, 450), n
        assert 5000 < p.stat().st_size <= 100 * 1024, (n, p.stat().st_size)
    text = doc.read_text()
    b, e = plots.begin_marker(shape), plots.end_marker(shape)
    block = text[text.index(b):text.index(e)]
    for n in names:
        assert "](img/%s)" % n in block, block
    assert "2026-01-02 03:04 UTC" in block and "0123456789ab" in block
    assert "bench/plot-results build/bench/%s.json" % shape in block
    # nothing outside the block changed (the other script's block neither)
    assert text[:text.index(b)] == DOC[:DOC.index(b)]
    assert text[text.index(e):] == DOC[DOC.index(e):]
    # redrawn from the same file: the same document
    assert plot(results, doc).returncode == 0
    assert doc.read_text() == text


@needs_mpl
def test_block_added_to_a_section_without_markers(runs, tmp_path):
    """A document whose section predates the charts gets the block at the
    end of the script's own section, not elsewhere."""
    results = compare_file(runs, tmp_path / "results.json")
    doc = tmp_path / "benchmarks.md"
    old = DOC.replace(plots.placeholder("compare-dovecot"), "")
    doc.write_text(old)
    assert plot(results, doc).returncode == 0
    text = doc.read_text()
    at = text.index(plots.begin_marker("compare-dovecot"))
    assert text.index("<!-- BEGIN compare-dovecot") < at < text.index("<!-- END compare-dovecot")
    assert text.endswith("## Floods\n\nother section\n")


def test_without_matplotlib_says_how(runs, tmp_path):
    """matplotlib missing (an import that fails, first on the path): exit
    1 with the package to install; the block says how to draw later."""
    fake = tmp_path / "nompl"
    fake.mkdir()
    (fake / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    results = compare_file(runs, tmp_path / "results.json")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    r = plot(results, doc, env=dict(os.environ, PYTHONPATH=str(fake)))
    assert r.returncode == 1 and "install-deps --bench" in r.stderr, r.stderr
    text = doc.read_text()
    assert "Not drawn" in text and "bench/plot-results build/bench/compare-dovecot.json" in text
    assert not (tmp_path / "img").exists() or not list((tmp_path / "img").iterdir())


def test_not_a_results_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool":"pop3-load"}')
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    r = plot(bad, doc)
    assert r.returncode == 1 and "not a results file" in r.stderr
    assert doc.read_text() == DOC
