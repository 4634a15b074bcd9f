from django.core.management.base import BaseCommand, CommandError

from ... import stall
from ...models import SimBatch


class Command(BaseCommand):
    help = (
        "Stall a simulated batch (its counts stop moving) or release it (it resumes where it stopped). "
        "Example: manage.py simulator_stall batch_0123… ; manage.py simulator_stall batch_0123… --release"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("batch_id", help="the simulated batch's id, e.g. msgbatch_01… or batch_…")
        parser.add_argument("--release", action="store_true", help="release it instead")

    def handle(self, *args, batch_id: str, release: bool, **options) -> None:
        try:
            changed = stall.release(batch_id) if release else stall.stall(batch_id)
        except SimBatch.DoesNotExist:
            raise CommandError(f"No simulated batch {batch_id!r}.") from None
        if release:
            self.stdout.write(f"{batch_id}: released." if changed else f"{batch_id} was not stalled.")
        else:
            self.stdout.write(f"{batch_id}: stalled until released." if changed else f"{batch_id} is already stalled.")
