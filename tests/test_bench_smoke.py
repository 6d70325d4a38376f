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

from bench import forwarding, hotspots, openssh, pairs, report
from bench.__main__ import parser
from bench.forwarding import Selection, percentile, share
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
    # the two targets against OpenSSH are not measured without the ssh path
    measured = [row["measured"] != "-" for row in results["targets"]]
    assert measured == [True, "upstream" in paths, True, False, False]
    assert "| path | round trip median" in stdout
    assert "failed" not in stderr


def test_quick_run_measures_ssh_mixed_pairs_and_the_relay(processes: ProcessGroup, tmp_path: Path) -> None:
    """ssh -L, upstream serving our client, and upstream relay-only: each row completes, checked."""
    upstream = upstream_python_path()
    if not os.access(upstream, os.X_OK):
        pytest.skip(f"upstream fowl not installed at {upstream}")
    paths = "upstream" if openssh.missing() else "ssh,upstream"
    out = tmp_path / "results.json"
    env = {**os.environ, "FOWL_UPSTREAM_PYTHON": str(upstream)}
    options = ["--paths", paths, "--pairs", "upstream/ours", "--relay", "--json", out]
    stdout, _ = _run_quick(processes, "forwarding", *options, env=env)

    results = json.loads(out.read_text())
    expected = [*paths.split(","), "upstream-ours", "upstream-relay"]
    assert list(results["paths"]) == expected
    for key, result in results["paths"].items():
        assert "error" not in result, f"{key}: {result['error']}"
        assert result["round_trip"]["count"] == results["config"]["round_trips"], key
        assert result["sha256_checked"] == results["config"]["transfers"] * (1 + results["config"]["streams"])
        assert result["label"] in stdout, key
    assert results["paths"]["upstream-ours"]["path"] == "direct"  # reported by our client daemon
    assert results["paths"]["upstream-relay"]["path"] == "relay"  # both daemons seen at the relay
    if "ssh" in paths:
        assert results["machine"]["openssh"].startswith("OpenSSH")


def _forwarding_args(*options: str) -> object:
    return parser().parse_args(["forwarding", *options])


def test_pairs_option_takes_service_and_client_sides(capsys: pytest.CaptureFixture) -> None:
    args = _forwarding_args("--pairs", "ours/upstream,upstream/ours")
    assert args.pairs == (("ours", "upstream"), ("upstream", "ours"))
    assert _forwarding_args().paths == ("raw", "ssh", "ours", "upstream")
    for bad in ("ours", "ours/theirs", "ours/upstream/ours", "ours/upstream,"):
        with pytest.raises(SystemExit):
            _forwarding_args("--pairs", bad)
        assert "is not SERVICE/CLIENT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _forwarding_args("--baseline", str(REPO_ROOT / "docs"))
    assert "no " in capsys.readouterr().err
    assert _forwarding_args("--baseline", str(REPO_ROOT)).baseline == REPO_ROOT


def test_pairs_with_base_need_a_baseline(capsys: pytest.CaptureFixture) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit):
        main(["forwarding", "--host-network", "--pairs", "base/ours"])
    assert "'base' needs --baseline" in capsys.readouterr().err


def test_pairings_come_alike_then_mixed_then_through_the_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOWL_UPSTREAM_PYTHON", str(tmp_path / "missing-python"))
    facts: dict = {}
    selection = Selection(
        paths=("raw", "ours"), pairs=(("ours", "ours"), ("base", "ours")), baseline=REPO_ROOT, relay=True
    )
    chosen = forwarding.choose(selection, facts)
    assert [i.key for i in chosen] == ["ours", "base", "base-ours", "ours-relay", "base-relay"]
    assert [i.label for i in chosen][2:4] == [
        "base service / ours client",
        "ours (fowld --stdio) via the relay",
    ]
    assert facts["baseline"] == str(REPO_ROOT)
    # a pair with upstream is left out when upstream's interpreter is missing
    mixed = Selection(paths=("ours",), pairs=(("ours", "upstream"),))
    assert [i.key for i in forwarding.choose(mixed, {})] == ["ours"]
    base = pairs.baseline(REPO_ROOT)
    argv = base.command("ws://127.0.0.1:1/v1", "tcp:127.0.0.1:2", True)
    assert argv[1] == "-P" and "--relay-only" in argv and base.env["PYTHONPATH"] == str(REPO_ROOT)


def test_round_trips_are_shared_out_among_blocks() -> None:
    for total, parts in ((1000, 5), (1000, 7), (20, 1), (3, 5)):
        counts = [share(total, parts, index) for index in range(parts)]
        assert sum(counts) == total and max(counts) - min(counts) <= 1, (total, parts, counts)


def test_targets_against_openssh_compare_within_the_run() -> None:
    paths = {
        "ours": {"round_trip": {"median_s": 0.6e-3}, "single": {"mb_per_s": 100.0}},
        "ssh": {"round_trip": {"median_s": 0.4e-3}, "single": {"mb_per_s": 300.0}},
    }
    rows = {row["target"]: row for row in report.forwarding_targets(paths)}
    round_trip = rows["our round trip median ≤ 2 × OpenSSH's"]
    rate = rows["our single-stream throughput ≥ 0.5 × OpenSSH's"]
    assert (round_trip["met"], round_trip["measured"]) == (True, "1.50 × (600 µs against 400 µs)")
    assert (rate["met"], rate["measured"]) == (False, "0.33 × (100 MB/s against 300 MB/s)")
    del paths["ssh"]
    assert [row["met"] for row in report.forwarding_targets(paths)][3:] == [None, None]


def test_a_relay_row_that_did_not_cross_the_relay_is_a_failure() -> None:
    results = {"paths": {"ours-relay": {"label": "ours via the relay", "path": "direct"}}}
    assert report.problems(results) == ["ours via the relay: not seen crossing the relay (path direct)"]
    results["paths"]["ours-relay"]["path"] = "relay"
    assert report.problems(results) == []


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
    runs = results["latency"]["fresh"]["runs"]
    assert runs and all(0 < run["code"] <= run["first_byte"] for run in runs)
