from django.core.management.base import BaseCommand

from dashboard.simulator.demo import seed_demo_batches


class Command(BaseCommand):
    help = "Create the simulator's demo accounts and (re)seed its demo batches, starting their clocks now."

    def handle(self, *args, **options) -> None:
        count = seed_demo_batches()
        self.stdout.write(self.style.SUCCESS(f"Seeded {count} demo batches across 4 simulated accounts."))
