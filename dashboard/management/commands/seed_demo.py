from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the simulator's demo accounts and (re)seed its demo batches, starting their clocks now."

    def handle(self, *args, **options) -> None:
        if not settings.SIMULATOR_ENABLED:
            self.stdout.write(
                "The embedded simulator is off (SIMULATOR_ENABLED=0 or real accounts configured): nothing to seed."
            )
            return
        from ...simulator.demo import DEMO_KEYS, seed_demo_batches

        count = seed_demo_batches()
        accounts = len(DEMO_KEYS)
        self.stdout.write(self.style.SUCCESS(f"Seeded {count} demo batches across {accounts} simulated accounts."))
