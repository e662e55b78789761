"""The drift benchmark: does the verdict stay quiet on harmless change and fire on harmful change?

`make bench-drift` (= `python -m loadtest.drift_bench`) scores three rules on the same windows
of three data sets that ship with packages or are generated here (scenarios.py):

    Vigil            the monitor's verdict (monitor/compare.py) on the windows' profiles
    Evidently-style  Evidently's defaults re-implemented on the raw rows (rules.py)
    PSI > 0.25       PSI per feature on the raw rows, dataset drift on half the features

and writes the table between its markers in BENCHMARKS.md. Single process, about a minute.
"""
