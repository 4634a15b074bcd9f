from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "dashboard.simulator"
    label = "simulator"
    verbose_name = "Batch API simulator"
