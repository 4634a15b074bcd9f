import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

# Cancel and acknowledge alarms, and read (never change) what the admin shows: the audit trail,
# the store and the alarms.
OPERATOR_PERMISSIONS = (
    "cancel_batch",
    "acknowledge_alarm",
    "view_alarm",
    "view_cancelattempt",
    "view_storedbatch",
    "view_batchchange",
    "view_accountstate",
)


class Command(BaseCommand):
    help = (
        "Create (or reset) a local operator account with a fresh random password and print it, "
        "so a newcomer can sign in. The user may cancel batches, acknowledge alarms and see the audit "
        "trail, on its page and (read-only) in the Django admin, with the stored batches, account health "
        "and alarms."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="operator")

    def handle(self, *args, username: str, **options) -> None:
        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = True
        user.save()
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="dashboard", codename__in=OPERATOR_PERMISSIONS)
        )
        verb = "Created" if created else "Reset the password of"
        self.stdout.write(self.style.SUCCESS(f"{verb} user '{username}'. Sign in with:"))
        self.stdout.write(f"    username: {username}\n    password: {password}")
