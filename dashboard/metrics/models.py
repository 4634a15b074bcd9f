"""Upstream calls, counted by every process."""

from django.db import models

# The latency histogram's upper bounds in seconds, each a column holding the calls that took at most
# that long (cumulative, as Prometheus reads them); `calls` is the +Inf bucket.
UPSTREAM_LATENCY_BUCKETS: dict[str, float] = {
    "le_0_025": 0.025,
    "le_0_05": 0.05,
    "le_0_1": 0.1,
    "le_0_25": 0.25,
    "le_0_5": 0.5,
    "le_1": 1.0,
    "le_2_5": 2.5,
    "le_5": 5.0,
    "le_10": 10.0,
    "le_15": 15.0,
    "le_30": 30.0,
    "le_60": 60.0,
}


class UpstreamCallStats(models.Model):
    """Upstream calls by account and result, added to by every web and poller process.

    Each process counts its calls in memory and adds them here about once a second (F() expressions,
    so processes flushing at once add up); /metrics reads this table (dashboard/metrics/).
    """

    account = models.CharField(max_length=100)
    result = models.CharField(max_length=16, help_text="ok, 4xx, 429, 5xx, timeout, transport_error, bad_response")
    calls = models.PositiveBigIntegerField(default=0)
    seconds_sum = models.FloatField(default=0.0, help_text="The calls' durations added up.")
    le_0_025 = models.PositiveBigIntegerField(default=0)
    le_0_05 = models.PositiveBigIntegerField(default=0)
    le_0_1 = models.PositiveBigIntegerField(default=0)
    le_0_25 = models.PositiveBigIntegerField(default=0)
    le_0_5 = models.PositiveBigIntegerField(default=0)
    le_1 = models.PositiveBigIntegerField(default=0)
    le_2_5 = models.PositiveBigIntegerField(default=0)
    le_5 = models.PositiveBigIntegerField(default=0)
    le_10 = models.PositiveBigIntegerField(default=0)
    le_15 = models.PositiveBigIntegerField(default=0)
    le_30 = models.PositiveBigIntegerField(default=0)
    le_60 = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "upstream call stats"
        constraints = [models.UniqueConstraint(fields=["account", "result"], name="one_upstream_call_stats_per_result")]

    def __str__(self) -> str:
        return f"{self.account} {self.result}: {self.calls}"
