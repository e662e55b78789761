"""The benchmark harness end to end in smoke mode: every server starts, answers and is measured.

Measurement, not a speed gate: the assertions are that each server answered correctly
under load (rows produced, no errors) and that the report was written — so the harness
cannot rot between `make bench` runs.
"""

from pathlib import Path

import pytest

from loadtest.bench import run_bench
from loadtest.servers import ALL, VIGIL_UNBATCHED
from vigil import config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_smoke_measures_every_server(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path / "home")})
    out = tmp_path / "BENCHMARKS.md"
    report = run_bench(settings, smoke=True, overload=True, out=out)

    measured = {row.server for row in report.rows}
    # smoke mode has no heavy model, so no unbatched RandomForest row
    assert measured == set(ALL) - {VIGIL_UNBATCHED}
    for row in report.rows:
        assert row.result.requests > 0 and row.result.rps > 0, row
        assert row.result.errors == 0, row
        assert row.rss_mb > 0, row
    assert all(row.ratio_to_ceiling is not None for row in report.rows)
    # the overload check ran on a small queue: it shed with 503s and served normally after
    assert report.overload is not None and report.overload.shed > 0 and report.overload.recovered

    text = out.read_text()
    assert "| vigil-grpc | iris LogisticRegression | 16 |" in text
    assert "| vigil-grpc-stream | iris LogisticRegression | 16 |" in text and "| bare-grpcio | iris" in text
    assert "overload (c=256" in text and "Produced by:" in text


def test_unknown_server_is_a_clear_error(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path / "home")})
    with pytest.raises(ValueError, match="unknown server.*vigil-http"):
        run_bench(settings, only=["nope"], out=tmp_path / "B.md")
