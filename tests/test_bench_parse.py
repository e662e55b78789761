"""Reading wrk's report: the benchmark's numbers come from here."""

import pytest

from loadtest.bench import Row, add_ratios
from loadtest.wrk import LoadResult, parse

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:18999/predict
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.91ms  389.08us  12.14ms   90.34%
    Req/Sec    18.14k     2.15k   19.63k    85.00%
  Latency Distribution
     50%  824.00us
     75%    0.90ms
     90%    1.13ms
     99%    2.38s
  36008 requests in 2.00s, 4.94MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 40
Requests/sec:  17997.26
Transfer/sec:      2.47MB
"""


def test_wrk_report_is_read_with_units_and_errors() -> None:
    result = parse(WRK_OUTPUT, concurrency=16, seconds=2)
    assert result.requests == 36008
    assert result.rps == pytest.approx(17997.26)
    assert result.p50_ms == pytest.approx(0.824)
    assert result.p99_ms == pytest.approx(2380.0)
    assert result.errors == 45  # 2 read + 3 timeout + 40 non-2xx


def test_ratio_is_against_the_ceiling_at_the_same_concurrency() -> None:
    def row(server: str, c: int, rps: float) -> Row:
        return Row(server, "m", LoadResult(c, 1, int(rps), rps, 1, 2, 0), 100)

    rows = [row("bare-starlette", 1, 1000), row("bare-starlette", 64, 10000), row("vigil-http", 1, 500), row("vigil-http", 64, 4000)]
    add_ratios(rows)
    assert [r.ratio_to_ceiling for r in rows] == [1.0, 1.0, 0.5, 0.4]


H2LOAD_OUTPUT = """\
finished in 3.00s, 500.00 req/s, 826.06KB/s
requests: 1500 total, 1500 started, 1500 done, 1499 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 1503 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_h2load_errors_come_from_the_log_and_cut_off_calls_are_not_errors() -> None:
    from loadtest.grpc_load import parse as parse_h2load

    # start µs, status, latency µs: two answered, one refused (503), one cut off at the end (0)
    log = ["1\t200\t1000", "2\t200\t3000", "3\t503\t2000", "4\t0\t9999000"]
    result = parse_h2load(H2LOAD_OUTPUT, log, 16, 2.0)
    assert result.rps == 500.0 and result.requests == 1500
    assert result.errors == 1 + 1  # the summary's failed call + the 503, not the cut-off one
    assert result.p99_ms < 3.0  # the cut-off call's 9,999 ms is no latency
