"""Prometheus exposition of the monitor's state, read at scrape time.

A custom collector rather than live Gauges: the numbers live in SQLite and in the
per-window drift reports, and reading them on scrape means nothing goes stale after a
restart. Labels are bounded: model, version, feature, method, metric, reason — never
request or batch ids.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.state import Monitor

MV = ["model", "version"]
LEVEL = {"none": 0, "minor": 1, "major": 2}


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


class MonitorCollector(Collector):
    """Yields every `vigil_monitor_*` family from a `Monitor`."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        status = self.monitor.status()
        yield from self._ingest(status)
        yield from self._labels(status)
        yield from self._drift()
        yield from self._reference()
        yield from self._kpis()

    def _ingest(self, status: dict[str, Any]) -> Iterator[Any]:
        profiles = CounterMetricFamily("vigil_monitor_profiles_ingested", "Batches ingested (exactly once)", labels=MV)
        rows = CounterMetricFamily("vigil_monitor_rows_ingested", "Rows ingested (exactly once)", labels=MV)
        received = CounterMetricFamily("vigil_monitor_profiles_received", "Batches received since start, replays included", labels=MV)
        lag = GaugeMetricFamily("vigil_monitor_ingest_lag_seconds", "Serve-to-ingest delay of the latest batch", labels=MV)
        since = GaugeMetricFamily("vigil_monitor_seconds_since_last_batch", "Time since the latest batch arrived", labels=MV)
        detections = CounterMetricFamily("vigil_monitor_concept_drift_detections", "ADWIN detections on the error stream", labels=MV)
        for v in status["versions"]:
            key = [v["model"], v["version"]]
            profiles.add_metric(key, v["profiles_ingested"])
            rows.add_metric(key, v["rows_ingested"])
            received.add_metric(key, v["profiles_received"])
            lag.add_metric(key, _num(v["ingest_lag_seconds"]))
            since.add_metric(key, _num(v["seconds_since_last_batch"]))
            detections.add_metric(key, v["concept_drift_detections"])
        duplicates = CounterMetricFamily("vigil_monitor_duplicate_profiles", "Replayed batches recognised and skipped")
        duplicates.add_metric([], status["duplicates"])
        rejected = CounterMetricFamily("vigil_monitor_rejected", "Requests refused with a 4xx", labels=["reason"])
        for reason, count in status["rejected"].items():
            rejected.add_metric([reason], count)
        yield from (profiles, rows, received, lag, since, detections, duplicates, rejected)

    def _labels(self, status: dict[str, Any]) -> Iterator[Any]:
        labels = CounterMetricFamily("vigil_monitor_labels", "Labels by outcome", labels=["outcome"])
        for outcome, count in status["labels"].items():
            if outcome != "waiting_now":
                labels.add_metric([outcome], count)
        waiting = GaugeMetricFamily("vigil_monitor_labels_waiting", "Labels waiting for their prediction")
        waiting.add_metric([], status["labels"]["waiting_now"])
        yield from (labels, waiting)

    def _drift(self) -> Iterator[Any]:
        fl = MV + ["feature", "method"]
        score = GaugeMetricFamily("vigil_monitor_feature_drift_score", "Test statistic (KS D or chi-square)", labels=fl)
        pvalue = GaugeMetricFamily("vigil_monitor_feature_drift_p_value", "p-value of the drift test", labels=fl)
        effect = GaugeMetricFamily("vigil_monitor_feature_drift_effect_size", "PSI against the reference", labels=fl)
        verdict = GaugeMetricFamily("vigil_monitor_feature_drift", "1 when the feature drifted majorly", labels=fl)
        severity = GaugeMetricFamily("vigil_monitor_feature_drift_severity",
                                     "0 none, 1 minor (dashboard only), 2 major (alerts)", labels=fl)
        weight = GaugeMetricFamily("vigil_monitor_feature_importance", "The feature's weight in the dataset verdict",
                                   labels=MV + ["feature"])
        dataset = GaugeMetricFamily("vigil_monitor_dataset_drift", "1 when the dataset drifted majorly (latest window)",
                                    labels=MV)
        dataset_level = GaugeMetricFamily("vigil_monitor_drift_severity", "Dataset drift: 0 none, 1 minor, 2 major",
                                          labels=MV)
        share = GaugeMetricFamily("vigil_monitor_drift_share", "Importance-weighted share of features in major drift",
                                  labels=MV)
        pred = GaugeMetricFamily("vigil_monitor_prediction_drift", "1 when the predictions drifted majorly", labels=MV)
        pred_level = GaugeMetricFamily("vigil_monitor_prediction_drift_severity", "0 none, 1 minor, 2 major", labels=MV)
        window_rows = GaugeMetricFamily("vigil_monitor_window_rows", "Rows in the latest window", labels=MV)
        quality = GaugeMetricFamily("vigil_monitor_quality", "Quality from joined labels (latest window)", labels=MV + ["metric"])
        qlabels = GaugeMetricFamily("vigil_monitor_quality_labels", "Labels behind the quality numbers", labels=MV)
        missing = GaugeMetricFamily("vigil_monitor_missing_values", "Null/NaN/inf values (latest window)", labels=MV + ["feature", "kind"])
        for entry in self.monitor.drift(limit=1)["versions"]:
            report, key = entry["latest"], [entry["model"], entry["version"]]
            if report is None:
                continue
            for name, f in report["features"].items():
                labels = key + [name, f["method"]]
                score.add_metric(labels, _num(f["statistic"]))
                pvalue.add_metric(labels, _num(f["p_value"]))
                effect.add_metric(labels, _num(f["effect_size"]))
                verdict.add_metric(labels, float(f["drift"]))
                severity.add_metric(labels, float(LEVEL[f["severity"]]))
                weight.add_metric(key + [name], _num(f["weight"]))
            dataset.add_metric(key, float(report["dataset_drift"]))
            dataset_level.add_metric(key, float(LEVEL[report["severity"]]))
            share.add_metric(key, report["drift_share"])
            pd_ = report["prediction_drift"]
            pred.add_metric(key, float(bool(pd_ and pd_["drift"])))
            if pd_:
                pred_level.add_metric(key, float(LEVEL[pd_["severity"]]))
            window_rows.add_metric(key, report["rows"])
            q = report["quality"]
            qlabels.add_metric(key, q["labels"])
            for metric, value in q.items():
                if metric not in ("labels", "error"):
                    quality.add_metric(key + [metric], _num(value))
            for name, c in report["data_quality"]["columns"].items():
                for kind in ("missing", "nan", "inf"):
                    missing.add_metric(key + [name, kind], c[kind])
        yield from (score, pvalue, effect, verdict, severity, weight, dataset, dataset_level, share, pred, pred_level,
                    window_rows, quality, qlabels, missing)

    def _reference(self) -> Iterator[Any]:
        # The version's holdout metrics (vigil.metric.* tags), so alerts can compare the
        # live quality with what the version scored at training time.
        ref = GaugeMetricFamily("vigil_monitor_reference_metric", "Holdout metric of the version at training time",
                                labels=MV + ["metric"])
        for model, version, _, _ in self.monitor.versions():
            try:
                metrics = self.monitor.references.get(model, version).metrics
            except (LookupError, OSError, ValueError):  # no reference: nothing to compare with
                continue
            for metric, value in metrics.items():
                ref.add_metric([model, version, metric], _num(value))
        yield ref

    def _kpis(self) -> Iterator[Any]:
        # Business KPIs from labels carrying `outcome` / `value`: latest window and all
        # kept rows per version, and the champion minus the version before it.
        from monitor.kpi import kpi_report

        labels = GaugeMetricFamily("vigil_monitor_kpi_labels", "Labels joined (latest window)", labels=MV)
        rate = GaugeMetricFamily("vigil_monitor_kpi_outcome_rate", "Share of positive outcomes (latest window)", labels=MV)
        vsum = GaugeMetricFamily("vigil_monitor_kpi_value_sum", "Sum of label values (latest window)", labels=MV)
        vmean = GaugeMetricFamily("vigil_monitor_kpi_value_mean", "Mean label value (latest window)", labels=MV)
        total_rate = GaugeMetricFamily("vigil_monitor_kpi_total_outcome_rate", "Outcome rate over kept rows", labels=MV)
        total_mean = GaugeMetricFamily("vigil_monitor_kpi_total_value_mean", "Mean value over kept rows", labels=MV)
        diff = GaugeMetricFamily("vigil_monitor_kpi_champion_diff", "Champion minus previous version",
                                 labels=["model", "champion", "previous", "kpi"])
        for entry in kpi_report(self.monitor, windows=1):
            for v in entry["versions"]:
                key = [entry["model"], v["version"]]
                total_rate.add_metric(key, _num(v["total"]["outcome_rate"]))
                total_mean.add_metric(key, _num(v["total"]["value_mean"]))
                if v["windows"]:
                    w = v["windows"][-1]
                    labels.add_metric(key, w["labels"])
                    rate.add_metric(key, _num(w["outcome_rate"]))
                    vsum.add_metric(key, _num(w["value_sum"]))
                    vmean.add_metric(key, _num(w["value_mean"]))
            c = entry["champion_vs_previous"]
            if c is not None:
                for kpi in ("outcome_rate", "value_mean"):
                    diff.add_metric([entry["model"], c["champion"], c["previous"], kpi], _num(c[f"{kpi}_diff"]))
        yield from (labels, rate, vsum, vmean, total_rate, total_mean, diff)
