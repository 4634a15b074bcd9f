from django.core.management.base import BaseCommand, CommandError

from ...demo import ensure_demo_accounts
from ...models import Fault, Provider, SimAccount


class Command(BaseCommand):
    help = (
        "Inject a fault or latency into every request of one simulated account, or clear it. "
        "Example: manage.py simulator_fault anthropic ops --fault 529 --latency-ms 300"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("provider", choices=Provider.values)
        parser.add_argument("account", help="simulated account name, e.g. ops or research")
        parser.add_argument(
            "--fault",
            default="",
            choices=[value for value, _ in Fault.choices],
            help="429, 500, 529, hang, non-json; empty string clears",
        )
        parser.add_argument("--latency-ms", type=int, default=0)
        parser.add_argument("--retry-after", type=int, default=2, help="seconds announced by the 429 fault")

    def handle(
        self, *args, provider: str, account: str, fault: str, latency_ms: int, retry_after: int, **options
    ) -> None:
        ensure_demo_accounts()
        updated = SimAccount.objects.filter(provider=provider, name=account).update(
            fault=fault, latency_ms=max(0, latency_ms), retry_after_seconds=max(0, retry_after)
        )
        if not updated:
            raise CommandError(f"No simulated {provider} account named {account!r}.")
        what = f"fault {fault!r}" if fault else "no fault"
        self.stdout.write(f"{provider}/{account}: {what}, {latency_ms} ms added latency.")
