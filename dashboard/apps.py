from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Batch dashboard"

    def ready(self) -> None:
        from .metrics import prometheus
        from .providers import transport
        from .web import auth

        auth.connect_invalidation()
        transport.record_calls_with(prometheus.record_upstream_call)
