"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from ..errors import DependencyError

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests by status, request latency, requests in flight, rows per model execution."""

    def __init__(self, model: str) -> None:
        try:
            import prometheus_client as prom
        except ImportError as err:
            raise DependencyError(
                "scconv-serve needs prometheus-client: pip install 'scconv-deploy[serve]'"
            ) from err
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        labels = {"labelnames": ["model"], "registry": self.registry}
        self.requests = prom.Counter(
            "scconv_infer_requests",
            "Inference requests by HTTP status.",
            ["model", "status"],
            registry=self.registry,
        ).labels
        self.latency = prom.Histogram(
            "scconv_infer_request_duration_seconds",
            "Inference request latency, parsing to response.",
            buckets=LATENCY_BUCKETS,
            **labels,
        ).labels(model)
        self.in_flight = prom.Gauge(
            "scconv_infer_in_flight", "Inference requests being served.", **labels
        ).labels(model)
        self.batch_rows = prom.Histogram(
            "scconv_execution_batch_rows", "Rows per model execution.", buckets=BATCH_BUCKETS, **labels
        ).labels(model)
        self.model = model

    def count(self, status: int) -> None:
        self.requests(self.model, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of ``/metrics`` in the Prometheus text format."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
