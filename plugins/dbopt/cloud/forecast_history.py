"""Traffic history for the scaling forecast: each past hour's peak concurrency, from Prometheus.

One ``query_range`` per forecasting service, hourly steps over the rule's ``weeks`` (+1 hour), with
``PROMQL_PEAK_CONCURRENCY``; the series are selected by the labels ``service`` and ``region`` (as the
Cloud Run metrics carry them once exported to Prometheus). A service without data gets an empty history,
so its fixed windows decide.
"""

from __future__ import annotations

from dbopt.cloud.forecast import HOUR_S, PROMQL_PEAK_CONCURRENCY, history_from_matrix, hour_start
from dbopt.cloud.scaling import ScalingRules
from dbopt.metrics.sources import MetricSourceError, PrometheusSource

WEEK_S = 7 * 24 * HOUR_S


def fetch_history(url: str, rules: ScalingRules, now: float) -> dict[tuple[str, str], dict[int, float]]:
    """``{(service, region): {hour start: peak concurrency}}`` for the rules that forecast."""
    end = hour_start(now)  # the last complete hour ends here
    history = {}
    for rule in rules.rules:
        if rule.forecast is None:
            continue
        source = PrometheusSource(url, {"service": {"service": rule.service, "region": rule.region}},
                                  queries={"peak_concurrency": PROMQL_PEAK_CONCURRENCY})  # fmt: skip
        try:
            expr, _ = source.promql("peak_concurrency", "service", HOUR_S)
            start = end - rule.forecast.weeks * WEEK_S - HOUR_S
            matrix = source.api("query_range", query=expr, start=start, end=end, step=HOUR_S)
        finally:
            source.close()
        if len(matrix) > 1:
            raise MetricSourceError(
                f"{expr!r} returned {len(matrix)} series for {rule.service}/{rule.region}; it must sum to one"
            )
        history[rule.key] = history_from_matrix(matrix[0]["values"]) if matrix else {}
    return history
