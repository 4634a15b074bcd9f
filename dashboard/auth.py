"""Permissions looked up once per user every few seconds, not on every request.

Every live row asks "may this user cancel?" on each poll, and Django's ModelBackend answers with
two queries per request. The answer is shared through the cache for PERMISSIONS_CACHE_SECONDS, so
a permission granted or revoked in the admin takes effect within that time.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache


class CachedPermissionsBackend(ModelBackend):
    def get_all_permissions(self, user_obj, obj=None):
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return super().get_all_permissions(user_obj, obj)
        if not hasattr(user_obj, "_perm_cache"):
            key = f"permissions:{user_obj.pk}"
            permissions = cache.get(key)
            if permissions is None:
                permissions = super().get_all_permissions(user_obj)
                cache.set(key, permissions, settings.PERMISSIONS_CACHE_SECONDS)
            user_obj._perm_cache = permissions
        return user_obj._perm_cache
