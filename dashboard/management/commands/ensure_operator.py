import getpass
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

from ...access import services as access
from ...access.models import Role

# The group `make run`'s operator is in: every role on every account.
OPERATORS_GROUP = "operators"

# Read (never change) what the admin shows: the audit trail, the store and the alarms. What it may
# do on the accounts comes from its group's grants (dashboard/access/).
OPERATOR_PERMISSIONS = (
    "view_alarm",
    "view_cancelattempt",
    "view_storedbatch",
    "view_batchchange",
    "view_accountstate",
)


class Command(BaseCommand):
    help = (
        "Create (or reset) a local operator account with a fresh random password and print it, "
        "so a newcomer can sign in. The user is in the group 'operators', which holds every role (operator and "
        "results reader) on every account ('*'). The user may cancel batches, acknowledge alarms and see the audit "
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
        for role in (Role.OPERATOR, Role.RESULTS):
            access.grant(group_name=OPERATORS_GROUP, patterns=["*"], role=role, actor=getpass.getuser(), via="cli")
        user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
        verb = "Created" if created else "Reset the password of"
        self.stdout.write(self.style.SUCCESS(f"{verb} user '{username}'. Sign in with:"))
        self.stdout.write(f"    username: {username}\n    password: {password}")
