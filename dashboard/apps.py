from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Batch dashboard"

    def ready(self) -> None:
        from . import auth, metrics
        from .providers import transport

        auth.connect_invalidation()
        transport.record_calls_with(metrics.record_upstream_call)
