"""loadtest/monitoring_cost.py: pairs of several process pairs pooled per concurrency, and the medians over them."""

from __future__ import annotations

from loadtest.monitoring_cost import CostAt, Run, floors, pooled, render


def _run(rps: float, cpu_s: float) -> Run:
    return Run(rps=rps, requests=int(rps * 5), errors=0, p99_ms=5.0, server_cpu_s=cpu_s, monitor_cpu_s=0.0)


def test_pairs_of_several_process_pairs_are_pooled_per_concurrency() -> None:
    lucky = [CostAt(16, off=[_run(100, 1.0)] * 2, on=[_run(105, 1.0)] * 2), CostAt(64, off=[_run(100, 1.0)], on=[_run(90, 1.0)])]
    unlucky = [CostAt(16, off=[_run(100, 1.0)] * 3, on=[_run(90, 1.0)] * 3), CostAt(64, off=[_run(100, 1.0)], on=[_run(90, 1.0)])]
    costs = pooled([lucky, unlucky])
    assert [at.concurrency for at in costs] == [16, 64]
    at16 = costs[0]
    assert len(at16.off) == len(at16.on) == 5
    assert abs(at16.throughput_ratio - 0.90) < 1e-9  # the median of 1.05, 1.05, 0.9, 0.9, 0.9
    assert abs(at16.cpu_ratio - 100 / 90) < 1e-9  # the same CPU over fewer requests, in three of five
    rows = floors(costs)
    assert rows[0][2] is False and rows[0][1] == "0.900 ×"
    assert "3 time(s) over with fresh processes" in " ".join(render(costs, 5.0, 5, 3))


def test_each_process_pairs_ratios_are_listed_under_the_pooled_table() -> None:
    lucky = [CostAt(16, off=[_run(100, 1.0)] * 2, on=[_run(105, 1.0)] * 2)]
    unlucky = [CostAt(16, off=[_run(100, 1.0)] * 3, on=[_run(90, 1.0)] * 3)]
    text = "\n".join(render(pooled([lucky, unlucky]), 5.0, 3, 2, [lucky, unlucky]))
    assert "Each process pair at c=16" in text
    assert "1.050 / 0.952, 0.900 / 1.111" in text  # in the order they ran
    assert "Each process pair" not in "\n".join(render(pooled([lucky]), 5.0, 3, 1, [lucky]))
