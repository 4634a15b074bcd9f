"""The signed-in user, their permissions and their grants looked up once, not on every request.

Every live page asks what changed every few seconds (web/live.py), and for each request Django's
ModelBackend reads the user and then (for "may this user cancel?") their permissions from the
database. Both are kept in the cache for PERMISSIONS_CACHE_SECONDS and dropped as soon as the user,
their groups or permissions, or a group's permissions change through Django (the admin,
createsuperuser, the ORM); a change of permissions made behind Django's back, in SQL or in another
process with its own cache, takes effect within PERMISSIONS_CACHE_SECONDS. A changed password or a
deactivation ends the user's sessions at once, however it was made: those two columns are read on
every request.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models.signals import m2m_changed, post_delete, post_save

from ..access import selectors as access_selectors
from ..access.models import AccessGrant


def _user_key(user_id) -> str:
    return f"user:{user_id}"


def _permissions_key(user_id) -> str:
    return f"permissions:{user_id}"


def _password_and_active(user_id) -> tuple[str, bool] | None:
    """The user's password hash and active flag, in one statement written once: the ORM would
    build and compile the same query on every request of every live page."""
    User = get_user_model()
    manager = User._default_manager
    connection = connections[manager.db]
    try:
        user_id = User._meta.pk.to_python(user_id)
    except ValidationError:
        return None
    sql = _CURRENT_SQL.get(connection.alias)
    if sql is None:
        name = connection.ops.quote_name
        sql = _CURRENT_SQL[connection.alias] = (
            f"SELECT {name(User._meta.get_field('password').column)}, "  # noqa: S608 (names from the model)
            f"{name(User._meta.get_field('is_active').column)} FROM {name(User._meta.db_table)} "
            f"WHERE {name(User._meta.pk.column)} = %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id])
        found = cursor.fetchone()
    return None if found is None else (found[0], bool(found[1]))


_CURRENT_SQL: dict[str, str] = {}


def forget(user_ids) -> None:
    cache.delete_many(
        [
            key
            for user_id in user_ids
            for key in (_user_key(user_id), _permissions_key(user_id), access_selectors.cache_key(user_id))
        ]
    )


class CachedPermissionsBackend(ModelBackend):
    def get_user(self, user_id):
        """The user, from the cache while their password hash and active flag are what the database
        holds: those two columns are read on every request (one primary-key lookup), so a session
        ends at once when its password changes or its user is deactivated, however it happened."""
        current = _password_and_active(user_id)
        if current is None:
            return None
        key = _user_key(user_id)
        user = cache.get(key)
        if user is None or (user.password, user.is_active) != current:
            user = super().get_user(user_id)
            if user is not None:
                cache.set(key, user, settings.PERMISSIONS_CACHE_SECONDS)
        return user

    def get_all_permissions(self, user_obj, obj=None):
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return super().get_all_permissions(user_obj, obj)
        if not hasattr(user_obj, "_perm_cache"):
            key = _permissions_key(user_obj.pk)
            permissions = cache.get(key)
            if permissions is None:
                permissions = super().get_all_permissions(user_obj)
                cache.set(key, permissions, settings.PERMISSIONS_CACHE_SECONDS)
            user_obj._perm_cache = permissions
        return user_obj._perm_cache


def _user_changed(sender, instance, **kwargs) -> None:
    forget([instance.pk])


def _memberships_changed(sender, instance, action, model, pk_set, **kwargs) -> None:
    if not action.startswith("post_"):
        return
    User = get_user_model()
    if isinstance(instance, User):
        forget([instance.pk])
    elif isinstance(instance, Group):
        forget(instance.user_set.values_list("pk", flat=True))
    elif model is User and pk_set:  # permission.user_set.add(...) and the like
        forget(pk_set)
    elif model is Group and pk_set:  # permission.group_set.add(...)
        forget(User.objects.filter(groups__in=pk_set).values_list("pk", flat=True))


def _grant_changed(sender, instance, **kwargs) -> None:
    forget(get_user_model().objects.filter(groups=instance.group_id).values_list("pk", flat=True))


def connect_invalidation() -> None:
    for signal in (post_save, post_delete):
        signal.connect(_grant_changed, sender=AccessGrant, dispatch_uid=f"forget-grant-{signal}")
    User = get_user_model()
    for signal in (post_save, post_delete):
        signal.connect(_user_changed, sender=User, dispatch_uid=f"forget-user-{signal}")
    for through in (User.groups.through, User.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(_memberships_changed, sender=through, dispatch_uid=f"forget-members-{through.__name__}")
