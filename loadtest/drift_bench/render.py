"""The drift benchmark's section of BENCHMARKS.md, and the floors it checks."""

from __future__ import annotations

import os
import platform
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loadtest.drift_bench.score import BEGIN, END, RULES, ScenarioScore

FLOOR_PROFILE_COMPARE_MS, FLOOR_COMPARE_MS = 20.0, 5.0


def _delay(rule: Any) -> str:
    d = rule.delay
    return "never" if d is None else "first window" if d == 0 else f"{d} windows late"


def floors(results: list[ScenarioScore], speed: dict[str, float]) -> list[tuple[str, bool]]:
    """Each floor of the verdict with whether Vigil met it."""
    out = []
    for r in results:
        v = r.rules[RULES[0]]
        out += [(f"{r.scenario.name}: 0/{len(v.stable)} stable false alarms", sum(v.stable) == 0),
                (f"{r.scenario.name}: harmful drift flagged in the first full window", v.delay == 0),
                (f"{r.scenario.name}: harmless drift flagged in at most 1 window in 7", sum(v.harmless) * 7 <= len(v.harmless))]
    out += [(f"profile + compare of a 2,000-row window <= {FLOOR_PROFILE_COMPARE_MS:g} ms",
             speed["profile_compare"] <= FLOOR_PROFILE_COMPARE_MS),
            (f"compare of 8 features <= {FLOOR_COMPARE_MS:g} ms", speed["compare"] <= FLOOR_COMPARE_MS)]
    return out


def section(results: list[ScenarioScore], alarms: dict[str, float], speed: dict[str, float]) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "## Drift that matters (`make bench-drift`)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on this machine ({os.cpu_count()} cores, "
        f"load average {load}, Python {platform.python_version()}), single process. Windows of W rows compared "
        "with the training reference; Vigil through the monitor's own code (profile as the serving side does, "
        "`monitor.compare`), the peers re-implemented on the raw rows in `loadtest/drift_bench/rules.py` "
        "(Evidently-style: KS / chi-square p < 0.05 when the reference has <= 1,000 rows, else normed "
        "Wasserstein / Jensen-Shannon >= 0.1, dataset drift on half the features; PSI: > 0.25 on half the "
        "features). Alarms are dataset drift (Vigil: major severity). Data: `loadtest/drift_bench/scenarios.py`.",
        "",
        "| data, W | rule | stable: false alarms | harmless drift: alarms | harmful drift: first alarm | harmful windows flagged | ms per window |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.scenario
        for name in RULES:
            v = r.rules[name]
            ms = sorted(v.ms)[len(v.ms) // 2]
            lines.append(f"| {s.name}, W={s.window} | {name} | {sum(v.stable)}/{len(v.stable)} | "
                         f"{sum(v.harmless)}/{len(v.harmless)} | {_delay(v)} | {sum(v.harmful)}/{len(v.harmful)} | {ms:.1f} |")
    lines += ["", "What the windows do to the model (holdout score: accuracy, or R² for the regressor), and Vigil's severities:", ""]
    for r in results:
        q = r.quality
        sev = "; ".join(f"{g}: " + ", ".join(f"{n} {k}" for k, n in sorted(Counter(v).items()))
                        for g, v in r.vigil_levels.items())
        by = ", ".join(f"{n}× {k}" for k, n in sorted(Counter(r.caught_by).items())) or "—"
        lines.append(f"- **{r.scenario.name}** ({r.scenario.description}): reference {q['reference']:.3f}, stable "
                     f"{q['stable']:.3f}, harmless {q['harmless']:.3f}, harmful {q['harmful']:.3f}. Severities — {sev}. "
                     f"Harmful windows caught through: {by}.")
    lines += [
        "",
        f"False-alarm rate, measured: {alarms['windows']} windows of 500 rows resampled from the seasonal reference: "
        f"a column significant at α/k in {alarms['significant']:.1%} (bound: α = 0.1 %), minor in {alarms['minor']:.1%}, "
        f"major in {alarms['major']:.1%}. At a 60 s window α = 0.001 bounds false alarms at 1.44 a day.",
        "",
        f"Speed, 8 numeric features, 2,000-row window, median of 30: Vigil profile + compare {speed['profile_compare']:.1f} ms "
        f"(compare alone {speed['compare']:.1f} ms), Evidently-style on raw rows {speed['evidently']:.1f} ms, "
        f"PSI on raw rows {speed['psi']:.1f} ms.",
        "",
        "Floors: " + "; ".join(f"{name} — {'met' if ok else 'NOT MET'}" for name, ok in floors(results, speed)) + ".",
    ]
    return "\n".join(lines)


def write_section(text: str, out: Path) -> None:
    """The drift bench's section, between its markers in `out`."""
    from loadtest.report import write_between

    write_between(text, out, BEGIN, END)
