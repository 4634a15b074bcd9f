import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0008_alarms"),
    ]

    operations = [
        migrations.CreateModel(
            name="ResultsSummary",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "sources",
                    models.CharField(
                        help_text="The result sources counted, in the order read, comma-separated: e.g. output,error.",
                        max_length=200,
                    ),
                ),
                ("total", models.PositiveBigIntegerField(help_text="Result lines counted.")),
                ("by_type", models.JSONField(help_text="[result type, lines] pairs, in result-type order.")),
                (
                    "errors",
                    models.JSONField(help_text="[error type, message, lines], most frequent first; keys redacted."),
                ),
                ("computed_at", models.DateTimeField()),
                (
                    "batch",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="results_summaries",
                        to="dashboard.storedbatch",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "results summaries",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("batch", "sources"), name="one_results_summary_per_batch_and_sources"
                    )
                ],
            },
        ),
    ]
