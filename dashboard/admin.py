from django.contrib import admin

from .models import AccountState, CancelAttempt, StoredBatch


class ReadOnlyAdmin(admin.ModelAdmin):
    """Evidence and observations: readable by staff, changeable by nobody."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CancelAttempt)
class CancelAttemptAdmin(ReadOnlyAdmin):
    """The audit trail."""

    list_display = ["requested_at", "actor", "via", "account", "batch_id", "outcome", "status_after", "finished_at"]
    list_filter = ["outcome", "via", "account"]
    search_fields = ["batch_id", "actor"]
    date_hierarchy = "requested_at"


@admin.register(StoredBatch)
class StoredBatchAdmin(ReadOnlyAdmin):
    """What the poller last saw of each batch."""

    list_display = ["batch_id", "account", "status", "is_ended", "total", "created_at", "last_fetched_at"]
    list_filter = ["provider", "account", "is_ended", "status"]
    search_fields = ["batch_id"]
    date_hierarchy = "created_at"


@admin.register(AccountState)
class AccountStateAdmin(ReadOnlyAdmin):
    """Each account's health and lease, as the poller sees them."""

    list_display = ["account", "last_success_at", "consecutive_failures", "backoff_until", "lease_owner", "lease_until"]
