"""Prometheus metrics (``GET /metrics``), one registry per daemon instance."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from photochangerd.domain.models import Outcome

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingests = Counter(
            "photochanger_ingest_requests",
            "Ingest attempts by slot, HTTP status and failure reason (rejections included).",
            ["slot", "status", "reason"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "photochanger_job_duration_seconds",
            "From arrival to finalization, by provider and outcome.",
            ["provider", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.provider_errors = Counter(
            "photochanger_provider_errors",
            "Failed provider calls (each step of a fallback chain counts), by provider and "
            "the HTTP status it maps to.",
            ["provider", "status"],
            registry=self.registry,
        )
        self.fallbacks_served = Counter(
            "photochanger_fallbacks_served",
            "Jobs answered with a fallback's result, by slot and provider/operation.",
            ["slot_id", "provider"],
            registry=self.registry,
        )
        self.cleanup = Counter(
            "photochanger_cleanup_deleted",
            "Files deleted by the cleaner, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "photochanger_jobs_in_flight",
            "Ingests admitted and not yet answered in this instance.",
            registry=self.registry,
        )

    def observe_job(
        self,
        provider: str,
        slot_id: str,
        outcome: Outcome,
        attempts: Sequence[Mapping[str, Any]],
        seconds: float,
    ) -> None:
        """A job's end: its duration, each failed provider call, a fallback that served it."""
        label = outcome.failure.value if outcome.failure else "success"
        self.job_duration.labels(provider=provider, outcome=label).observe(seconds)
        for attempt in attempts:
            if attempt["outcome"] == "provider_error":
                status = str(attempt["status"])
                self.provider_errors.labels(provider=attempt["provider"], status=status).inc()
        if outcome.fallback_step:
            self.fallbacks_served.labels(slot_id=slot_id, provider=outcome.served_by).inc()

    def track_in_flight(self, read: Callable[[], float]) -> None:
        self.in_flight.set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
