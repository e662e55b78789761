"""The soak's arithmetic and report, without processes: h2load's files, buckets, RSS growth,
the floors and where the section lands in BENCHMARKS.md."""

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from loadtest.report import MARKER, write_markdown
from loadtest.soak_probe import Sample, h2load_argv, read_log, read_summary
from loadtest.soak_report import BEGIN, END, Bucket, Errors, RampStep, SoakReport, latency_buckets, render, rss_growth, write_section
from loadtest.wrk import LoadResult

H2LOAD_OUTPUT = """\
finished in 60.00s, 4800.12 req/s, 1.20MB/s
requests: 288010 total, 288012 started, 288007 done, 288000 succeeded, 7 failed, 3 errored, 0 timeout
status codes: 288004 2xx, 0 3xx, 0 4xx, 3 5xx
"""


def sample(t: float, worker_mb: float, lag: float = 0.2, served: float = 0, ingested: float = 0) -> Sample:
    return Sample(t, worker_mb, 20.0, 200.0, lag, served, ingested, (42,))


def report(**changes) -> SoakReport:
    base = dict(
        date="2026-01-01 00:00", cores=2, load_avg=(1.0, 1.0, 1.0),
        max_http=LoadResult(48, 15, 90000, 6000.0, 5, 9, 0), max_grpc=LoadResult(16, 15, 22500, 1500.0, 8, 12, 0),
        max_catch_up_s=5.0, sustained_rps=7500.0, load=0.8, http_rps=4800.0, grpc_rps=1200.0, http_clients=48, grpc_clients=16, warmup_s=60.0,
        duration_s=660.0, slo_p99_ms=25.0, lag_bound_s=5.0,
        samples=[sample(t, 300.0 + t / 600, served=t * 6000, ingested=t * 6000) for t in range(0, 661, 5)],
        buckets=[Bucket(float(b), 60000, 2.0, 9.0) for b in range(0, 660, 10)],
        http_requests=3_168_000, grpc_requests=791_000, p50_ms=2.0, p99_ms=9.0,
        rows_served=3_960_000.0, rows_ingested=3_960_000.0, command="vigil soak --minutes 10", unwatched_rps=8000.0,
        unwatched_burst_rps=9000.0,
    )
    return SoakReport(**{**base, **changes})


def test_h2load_log_columns_are_start_status_latency(tmp_path: Path) -> None:
    log = tmp_path / "h2.log"
    # a future h2load may append columns: they are ignored
    log.write_text("1795705459897454\t200\t1258\n1795705459897467\t-1\t0\textra\n")
    frame = read_log(log, "grpc")
    assert frame["status"].tolist() == [200, -1]
    assert frame["latency_us"].tolist() == [1258, 0]
    assert set(frame["protocol"]) == {"grpc"}
    assert read_log(tmp_path / "missing.log", "http").empty


def test_h2load_summary_counts_and_a_missing_summary_is_an_error() -> None:
    summary = read_summary(H2LOAD_OUTPUT)
    assert (summary.done, summary.succeeded, summary.failed) == (288007, 288000, 7)
    with pytest.raises(RuntimeError, match="no summary"):
        read_summary("connect: Connection refused")


def test_h2load_is_paced_per_client_and_pinned(tmp_path: Path) -> None:
    argv = h2load_argv("http://127.0.0.1:1/predict", tmp_path / "b", ["content-type: application/json"], 48,
                       100.0, 660, tmp_path / "l", http1=True, cpu=1)
    assert argv[:3] == ["taskset", "-c", "1"]
    assert "--h1" in argv and "-c48" in argv and "--rps=100.000" in argv and "-D660" in argv
    assert argv[argv.index("-H") + 1] == "content-type: application/json"


def test_buckets_are_ten_seconds_from_the_first_request_and_skip_failed_streams() -> None:
    t0 = 1_700_000_000_000_000
    rows = [(t0 + i * 100_000, 200, 1000 + i) for i in range(100)]  # 10 s of 1-ms-ish requests
    rows += [(t0 + 10_000_000 + i * 100_000, 200, 30_000) for i in range(50)]  # next 5 s: 30 ms
    rows += [(t0 + 12_000_000, -1, 0)]  # a failed stream: no latency
    rows += [(t0 + 20_001_000, 200, 30_000)]  # sent by an h2load that started a ms late: joins the last bucket
    frame = pd.DataFrame(rows, columns=["start_us", "status", "latency_us"])
    buckets, p50, p99 = latency_buckets(frame, duration_s=20)
    assert [(b.start_s, b.requests) for b in buckets] == [(0.0, 100), (10.0, 51)]
    assert buckets[0].p99_ms == pytest.approx(1.098, abs=0.01) and buckets[1].p99_ms == pytest.approx(30.0)
    assert p50 == pytest.approx(1.075, abs=0.01) and p99 == pytest.approx(30.0)
    assert latency_buckets(frame[frame["status"] < 0], 20)[0] == []


def test_rss_growth_compares_medians_of_the_first_and_last_minute_after_warm_up() -> None:
    samples = [sample(t, 500.0) for t in range(0, 60, 5)]  # warm-up: ignored however large
    samples += [sample(t, 300.0) for t in range(60, 120, 5)] + [sample(120, 900.0)]  # one spike: not the median
    samples += [sample(t, 310.0) for t in range(125, 600, 5)] + [sample(t, 312.0) for t in range(600, 661, 5)]
    rss = rss_growth(samples, warmup_s=60, end_s=660)
    assert rss.window_s == 60 and rss.first_mb == 300.0 and rss.last_mb == 312.0
    assert rss.growth == pytest.approx(0.04) and rss.max_mb == 900.0 and rss.max_growth == pytest.approx(2.0)
    # a short run compares thirds of the post-warm-up time
    assert rss_growth(samples[:30], warmup_s=60, end_s=150).window_s == 30
    assert math.isnan(rss_growth(samples[:5], warmup_s=60, end_s=660).first_mb)


def _fake_steps(monkeypatch, limits: dict[str, float]) -> list[tuple[str, float]]:
    """Replace the timed step: each side keeps up to its limit; returns (side, rps) in the order run."""
    import loadtest.soak_ramp as ramp

    offered: list[tuple[str, float]] = []

    def step(target, rps, share, folder, seconds):
        offered.append((target.name, rps))
        kept = rps <= limits[target.name] + 1e-6
        return RampStep(rps, seconds, 1.0 if kept else 0.97, 0.5, kept)

    monkeypatch.setattr(ramp, "step", step)
    return offered


def sides_of(side: type) -> list:
    """Two sides whose targets are stand-ins: only their name (for the fake step) and `watched` are read."""
    return [side("unwatched", SimpleNamespace(name="bare", watched=False), []),
            side("watched", SimpleNamespace(name="watched", watched=True), [])]


def test_the_search_climbs_both_sides_interleaved_then_halves_each_gap(monkeypatch, tmp_path) -> None:
    from loadtest.soak_ramp import Side, search

    offered = _fake_steps(monkeypatch, {"bare": 7_200.0, "watched": 6_600.0})
    sides = sides_of(Side)
    search(sides, 10_000.0, 0.2, tmp_path, step_s=3)
    # the climb: shares 0.5, 0.6, 0.7, 0.75 of the burst, the order swapping at each share; the
    # watched side misses at 0.7 twice running and stops, the unwatched one at 0.75
    assert offered[:9] == [("bare", 5_000), ("watched", 5_000), ("watched", 6_000), ("bare", 6_000),
                           ("bare", 7_000), ("watched", 7_000), ("watched", 7_000), ("bare", 7_500), ("bare", 7_500)]
    # then two halvings per side: unwatched 7,000..7,500 -> 7,250 (no, twice) -> 7,125; watched
    # 6,000..7,000 -> 6,500 -> 6,750 (no, twice)
    assert offered[9:] == [("bare", 7_250), ("bare", 7_250), ("watched", 6_500), ("bare", 7_125),
                           ("watched", 6_750), ("watched", 6_750)]
    assert sides[0].best == 7_125 and sides[1].best == 6_500 and sides[1].missed == 6_750
    assert [st.retried for st in sides[1].steps if not st.ok] == [True, False, True, False]


def test_a_miss_that_keeps_up_on_its_retry_does_not_stop_the_climb(monkeypatch, tmp_path) -> None:
    from loadtest.soak_ramp import RAMP_SHARES, Side, search

    offered = _fake_steps(monkeypatch, {"bare": 1e9, "watched": 1e9})
    import loadtest.soak_ramp as ramp

    steady = ramp.step
    unlucky = {("watched", 6_000.0)}  # one bad step: its first run misses, its retry keeps up

    def step(target, rps, share, folder, seconds):
        result = steady(target, rps, share, folder, seconds)
        if (target.name, rps) in unlucky:
            unlucky.discard((target.name, rps))
            return RampStep(rps, seconds, 0.9, 0.5, False)
        return result

    monkeypatch.setattr(ramp, "step", step)
    sides = sides_of(Side)
    search(sides, 10_000.0, 0.2, tmp_path, step_s=3)
    assert offered.count(("watched", 6_000)) == 2 and len(offered) == 2 * len(RAMP_SHARES) + 1
    assert sides[1].missed is None and sides[1].best == 10_000


def test_a_side_that_never_misses_is_not_refined_and_one_that_never_keeps_up_is_an_error(monkeypatch,
                                                                                          tmp_path) -> None:
    from loadtest.soak_ramp import RAMP_SHARES, Side, search

    offered = _fake_steps(monkeypatch, {"bare": 1e9, "watched": 1e9})
    sides = sides_of(Side)
    search(sides, 10_000.0, 0.2, tmp_path, step_s=3)
    assert len(offered) == 2 * len(RAMP_SHARES) and sides[0].best == sides[1].best == 10_000
    _fake_steps(monkeypatch, {"bare": 1e9, "watched": 1.0})
    with pytest.raises(RuntimeError, match="watched: did not keep up"):
        search(sides_of(Side), 10_000.0, 0.2, tmp_path)


def test_the_side_not_measured_is_stopped_for_the_step_and_resumed_after() -> None:
    import subprocess
    import sys
    import time

    import psutil

    from vigil.procs import stopped

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        def status_soon(wanted: bool) -> bool:  # a signal is delivered asynchronously
            deadline = time.monotonic() + 5
            while (psutil.Process(child.pid).status() == psutil.STATUS_STOPPED) != wanted:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            return True

        with stopped([child.pid]):
            assert status_soon(True)
            with pytest.raises(ValueError):
                with stopped([child.pid]):
                    raise ValueError("a failed step")
        assert status_soon(False)
    finally:
        child.kill()
        child.wait()


def test_every_floor_is_met_by_a_clean_run() -> None:
    floors = report().floors()
    assert len(floors) == 5 and all(f.ok for f in floors), floors
    assert report().ok


def test_watching_must_keep_nine_tenths_of_the_unwatched_maximum() -> None:
    floor = next(f for f in report(sustained_rps=7_100.0).floors() if "unwatched" in f.name)
    assert not floor.ok and "0.89 ×" in floor.value
    assert next(f for f in report(sustained_rps=7_200.0).floors() if "unwatched" in f.name).ok


@pytest.mark.parametrize("changes", [
    {"samples": [sample(t, 300.0 if t < 400 else 330.0, served=1, ingested=1) for t in range(0, 661, 5)]},
    {"buckets": [Bucket(0.0, 100, 2.0, 9.0), Bucket(10.0, 100, 3.0, 25.5)]},
    {"errors": Errors(grpc=1)},
    {"errors": Errors(rejected=2)},
    {"errors": Errors(worker_restarts=1)},
    {"samples": [sample(t, 300.0, lag=0.2 if t < 500 else 6.0) for t in range(0, 661, 5)]},
    {"rows_ingested": 3_959_999.0},
    {"http_requests": 3_100_000},  # a server that stopped answering: nothing failed, but the load was not carried
])
def test_each_floor_can_be_missed(changes: dict) -> None:
    missed = [f for f in report(**changes).floors() if not f.ok]
    assert len(missed) == 1, missed
    assert not report(**changes).ok


def test_a_run_without_requests_is_not_a_clean_run() -> None:
    empty = report(http_requests=0, grpc_requests=0, buckets=[])
    assert not empty.ok and [f.value for f in empty.floors() if not f.ok][0] == "no requests"


def test_lag_during_warm_up_is_not_judged() -> None:
    # the gauge shows the latest batch: the saturation phase's backlog, until the soak's first batch
    samples = [sample(0, 300.0, lag=9.0)] + [sample(t, 300.0) for t in range(5, 661, 5)]
    assert report(samples=samples).max_lag_s == pytest.approx(0.2)


def test_the_section_goes_above_the_bench_marker_and_replaces_itself(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\nhand-written analysis\n\n{MARKER}\n\n| generated | table |\n")
    write_section(render(report(command="vigil soak --run-one")), out)
    write_section(render(report(command="vigil soak --run-two")), out)
    text = out.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "--run-one" not in text and "--run-two" in text
    assert text.index("hand-written analysis") < text.index(BEGIN) < text.index(END) < text.index(MARKER)
    assert "| generated | table |" in text
    # `make bench` rewrites below its marker and keeps the soak
    write_markdown("new tables", out)
    text = out.read_text()
    assert "## Soak" in text and "new tables" in text and "| generated | table |" not in text


def test_a_new_file_gets_the_bench_marker_so_make_bench_keeps_the_soak(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    write_section(render(report()), out)
    write_markdown("bench tables", out)
    text = out.read_text()
    assert text.startswith("# Benchmarks") and text.count(BEGIN) == 1 and "bench tables" in text
    assert "0 of 3,959,000 requests (HTTP 0, gRPC 0)" in text and "99.97% answered | yes |" in text


@pytest.mark.parametrize("argv, message", [
    (["--load", "2"], "load must be in (0, 1]"),
    (["--minutes", "0"], "minutes must be > 0"),
])
def test_bad_options_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    assert main(["soak", *argv, "--out", str(tmp_path / "B.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil soak: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "B.md").exists()


def test_the_command_exits_1_on_a_missed_floor_and_records_how_it_was_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import loadtest.soak
    from cli.main import main

    calls = []

    def fake_run_soak(settings, **kwargs):  # the run itself is covered by test_soak_smoke.py
        calls.append(kwargs)
        return report(errors=Errors(http=1) if kwargs["minutes"] == 3 else Errors())

    monkeypatch.setattr(loadtest.soak, "run_soak", fake_run_soak)
    assert main(["soak", "--minutes", "3", "--out", str(tmp_path / "B.md")]) == 1
    assert main(["soak", "--minutes", "2", "--load", "0.5", "--out", str(tmp_path / "B.md")]) == 0
    assert calls[0]["command"] == "vigil soak --minutes 3 --warmup 60 --load 0.8" and calls[0]["warmup_s"] == 60
    assert calls[1]["load"] == 0.5 and calls[1]["out"] == tmp_path / "B.md" and calls[1]["rate"] is None
    assert main(["soak", "--minutes", "2", "--rate", "4000", "--out", str(tmp_path / "B.md")]) == 0
    assert calls[2]["rate"] == 4000 and calls[2]["command"] == "vigil soak --minutes 2 --warmup 60 --rate 4000"


def test_soak_has_its_own_help_and_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import build_parser, main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "\n    soak" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["soak", "--help"])
    out = capsys.readouterr().out
    assert "usage: vigil soak" in out and "--rate" in out and "--smoke" in out
