"""The spend rollup: ended batches' tokens added up per account, provider, model and UTC day.

Kept by database triggers (migration 0026, dashboard/spend/rollup.py) on every write of BatchTokens and
of a StoredBatch's account, provider, end or deletion, so that spend reads a few rows per day whatever
the store holds. Cost is still computed when read, from these tokens and the current price table.
"""

from django.db import models


class SpendDay(models.Model):
    """The tokens of the batches of one account, provider and model that ended on one UTC day (a batch with
    no end time is not on any day). `batches` counts the (batch, model) rows added: 0 once all were taken
    away again (such a row is kept, and read as absent)."""

    account = models.CharField(max_length=100)
    day = models.DateField(help_text="The UTC day the batches ended.")
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=200, blank=True, default="")
    input = models.BigIntegerField(default=0)
    cache_read = models.BigIntegerField(default=0)
    cache_write = models.BigIntegerField(default=0)
    output = models.BigIntegerField(default=0)
    reasoning = models.BigIntegerField(default=0)
    batches = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "spend days"
        constraints = [
            # The triggers' upsert target; led by the account and the day, as the spend page reads a range.
            models.UniqueConstraint(fields=["account", "day", "provider", "model"], name="one_spend_day_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.day} {self.model or '(model unknown)'}"
