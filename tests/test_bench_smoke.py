"""Both benchmarks run end to end (``python -m bench forwarding|daemon --quick``), every transfer checked.

No timing is asserted: numbers vary between machines. What must hold is that
each path completes, the SHA-256 digests match, and the report is printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import hotspots
from bench.forwarding import percentile
from harness.servers import REPO_ROOT, ProcessGroup, upstream_python_path

RUN_TIMEOUT = 90.0  # seconds; a quick run takes about 6 on a 2-core machine


def _run_quick(processes: ProcessGroup, benchmark: str, *options: str | Path, env: dict[str, str]) -> str:
    """``python -m bench BENCHMARK --quick OPTIONS`` to its end; its stdout and stderr."""
    argv = [sys.executable, "-m", "bench", benchmark, "--quick", *options]
    bench = processes.spawn(argv, env=env, cwd=REPO_ROOT, name=f"bench-{benchmark}")
    try:
        code = bench.wait(RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the quick {benchmark} benchmark took over {RUN_TIMEOUT}s\n{processes.describe(bench)}")
    assert code == 0, f"exit code {code}\n{processes.describe(bench)}"
    return processes.output(bench)


def test_quick_run_completes_with_matching_hashes(processes: ProcessGroup, tmp_path: Path) -> None:
    upstream = upstream_python_path()
    paths = "raw,ours,upstream" if os.access(upstream, os.X_OK) else "raw,ours"
    out = tmp_path / "results.json"
    env = {**os.environ, "FOWL_UPSTREAM_PYTHON": str(upstream)}
    stdout, stderr = _run_quick(processes, "forwarding", "--paths", paths, "--json", out, env=env)

    results = json.loads(out.read_text())
    assert sorted(results["paths"]) == sorted(paths.split(","))
    streams = results["config"]["streams"]
    for key, result in results["paths"].items():
        assert "error" not in result, f"{key}: {result['error']}"
        assert result["round_trip"]["count"] == results["config"]["round_trips"], key
        assert result["single"]["bytes"] == results["config"]["bulk_bytes"], key
        assert result["single"]["mb_per_s"] > 0, key
        assert result["parallel"]["streams"] == streams, key
        assert result["sha256_checked"] == results["config"]["transfers"] * (1 + streams), key
        assert result["label"] in stdout, f"{key} is missing from the table:\n{stdout}"
    assert results["paths"]["ours"]["setup"]["median_s"] > 0
    assert results["paths"]["ours"]["path"] == "direct"
    measured = [row["measured"] != "-" for row in results["targets"]]
    # round trip, ratio, (CPU per GB: a quick run moves too few bytes to count it), spread, setup
    assert measured[:2] == [True, "upstream" in paths] and measured[3:] == [True, True]
    assert 0 <= results["paths"]["ours"]["parallel"]["spread"] < 1
    assert "| path | round trip median" in stdout
    assert "failed" not in stderr


def test_samples_are_grouped_by_innermost_library() -> None:
    site = "/venv/lib/python3.11/site-packages"
    reactor = f"run ({site}/twisted/internet/base.py)"
    read = f"doRead ({site}/twisted/internet/tcp.py)"
    record = f"send_record ({site}/wormhole/_dilation/connection.py)"
    encrypt = f"encrypt ({site}/noise/connection.py)"
    assert hotspots.classify(";".join([reactor, read, record, encrypt])) == "Noise encryption"
    assert hotspots.classify(";".join([reactor, read, record])) == "magic-wormhole records"
    # a standard-library leaf counts for the library that called it
    assert (
        hotspots.classify(";".join([reactor, read, "send (/usr/lib/python3.11/socket.py)"])) == "Twisted I/O"
    )
    # any frame of the byte reports puts the sample there, whatever it calls
    report = f"_event ({REPO_ROOT}/fowld/stdio/controller.py)"
    assert hotspots.classify(";".join([reactor, report, read])) == hotspots.REPORTS
    upstream_line = f"output_fowl_message ({site}/fowl/_proto.py)"
    assert hotspots.classify(
        ";".join([reactor, upstream_line, "dumps (/usr/lib/python3.11/json/__init__.py)"])
    ) == (hotspots.REPORTS)
    # py-spy qualifies function names with their class or enclosing function
    counters = f"StreamTable.mark_dirty ({REPO_ROOT}/fowld/engine/streams.py)"
    assert hotspots.classify(";".join([reactor, counters, "callLater (x/twisted/internet/base.py)"])) == (
        hotspots.REPORTS
    )
    printer = f"forward.<locals>.output_fowl_message ({site}/fowl/_proto.py)"
    assert hotspots.classify(";".join([reactor, printer])) == hotspots.REPORTS
    assert hotspots.classify(f"Stream.from_local ({REPO_ROOT}/fowld/engine/streams.py)") == "forwarder code"
    assert hotspots.classify(f"dataReceived ({REPO_ROOT}/fowld/engine/tunnel.py)") == "forwarder code"
    assert hotspots.classify("<module> (<frozen runpy>)") == "other"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_daemon_benchmark_quick_run_measures_every_level(processes: ProcessGroup, tmp_path: Path) -> None:
    """``python -m bench daemon --quick`` pairs real daemons and reports footprint and latency."""
    out = tmp_path / "daemon.json"
    _run_quick(processes, "daemon", "--json", out, env=dict(os.environ))
    results = json.loads(out.read_text())
    assert results["errors"] == []
    levels = results["footprint"]["levels"]
    assert [level["sessions"] for level in levels][0] == 0 and len(levels) >= 2
    assert all(level["A"]["sample"]["rss_kb"] > 0 for level in levels)
    assert all(level[side]["list_s"] > 0 for level in levels for side in "AB")  # fowlctl list answered
    runs = results["latency"]["fresh"]["runs"]
    assert runs and all(0 < run["code"] <= run["first_byte"] for run in runs)
