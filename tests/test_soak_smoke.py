"""The soak end to end, short: real Vigil + monitor, the max measurement, paced HTTP + gRPC
load, sampling, the verdicts, soak.png and the Soak section.

Measurement, not a speed gate: the machine is shared, so the RSS / p99 / lag floors are
only required to be *computed*; what must hold is correctness — requests answered without
errors, every served row ingested by the monitor exactly once.
"""

import math
from pathlib import Path

import pytest

from loadtest.report import MARKER
from loadtest.soak import SMOKE, run_soak
from loadtest.soak_report import BEGIN, END, render, write_section
from vigil import config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_short_soak_samples_judges_and_writes_its_section(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path / "home")})
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\nhand-written\n\n{MARKER}\n\n| bench | table |\n")

    report = run_soak(settings, load=0.8, out=out, command="vigil soak --smoke", **SMOKE)

    assert report.max_http.rps > 0 and report.max_grpc.rps > 0 and 0 < report.grpc_share < 1
    assert report.http_requests > 0 and report.grpc_requests > 0  # both protocols carried load
    assert report.errors.none, report.errors
    assert len(report.samples) >= 10 and all(s.worker_mb > 0 and s.agent_mb > 0 for s in report.samples)
    assert report.samples[0].worker_pids and report.samples[-1].worker_pids == report.samples[0].worker_pids
    assert len(report.buckets) >= 2 and sum(b.requests for b in report.buckets) == report.requests
    # exactly once, after the drain: every row the service answered reached the monitor
    assert report.rows_served > report.requests and report.rows_ingested == report.rows_served
    # the floors are computed from real figures (whether they are met depends on the machine)
    floors = report.floors()
    assert len(floors) == 5 and report.unwatched_rps > 0
    assert math.isfinite(report.rss.growth) and math.isfinite(report.max_lag_s) and report.p99_ms > 0
    assert report.worst_bucket is not None and report.worst_bucket.p99_ms >= report.p50_ms
    assert set(report.protocol_p99_ms) == {"http", "grpc"} and all(v > 0 for v in report.protocol_p99_ms.values())

    assert report.chart == tmp_path / "soak.png" and report.chart.stat().st_size > 10_000
    text = out.read_text()
    assert text.index("hand-written") < text.index(BEGIN) < text.index("## Soak") < text.index(END) < text.index(MARKER)
    assert "| bench | table |" in text and "vigil soak --smoke" in text
    assert f"{report.requests:,} ({report.http_requests:,} HTTP" in text

    # a second run's section replaces the first one's
    report.command = "vigil soak --minutes 0.25"
    write_section(render(report), out)
    text = out.read_text()
    assert text.count(BEGIN) == 1 and text.count("## Soak") == 1
    assert "vigil soak --minutes 0.25" in text and "vigil soak --smoke" not in text
