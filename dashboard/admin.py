from django.contrib import admin

from .models import CancelAttempt


@admin.register(CancelAttempt)
class CancelAttemptAdmin(admin.ModelAdmin):
    """The audit trail is evidence: readable by staff, changeable by nobody."""

    list_display = ["requested_at", "actor", "via", "account", "batch_id", "outcome", "status_after", "finished_at"]
    list_filter = ["outcome", "via", "account"]
    search_fields = ["batch_id", "actor"]
    date_hierarchy = "requested_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
