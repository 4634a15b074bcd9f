from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Batch dashboard"

    def ready(self) -> None:
        from . import auth

        auth.connect_invalidation()
