from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Batch dashboard"

    def ready(self) -> None:
        from .batches import search_index
        from .metrics import call_counter
        from .providers import transport
        from .spend import (
            rollup,
            table,  # noqa: F401 (registers the price table's system check)
        )
        from .web import auth

        auth.connect_invalidation()
        search_index.connect()
        rollup.connect()
        transport.record_calls_with(call_counter.record_upstream_call)
