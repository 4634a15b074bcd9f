from django.contrib import admin, messages

from . import alarms
from .models import AccountState, Alarm, AlarmEvaluator, AlarmThreshold, CancelAttempt, StoredBatch


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


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    """Alarms as the poller opened and resolved them; staff may acknowledge them here too."""

    list_display = ["rule", "account", "batch", "opened_at", "last_seen_at", "resolved_at", "acknowledged_by"]
    list_filter = ["rule", "account", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["account", "batch__batch_id", "detail"]
    date_hierarchy = "opened_at"
    list_select_related = ["batch", "acknowledged_by"]
    actions = ["acknowledge"]

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("dashboard.acknowledge_alarm")

    @admin.action(description="Acknowledge the selected alarms", permissions=["acknowledge"])
    def acknowledge(self, request, queryset) -> None:
        for alarm in queryset:
            alarms.acknowledge(alarm, request.user, "acknowledged in the admin")
        self.message_user(request, f"{len(queryset)} alarm(s) acknowledged.", messages.SUCCESS)


@admin.register(AlarmThreshold)
class AlarmThresholdAdmin(admin.ModelAdmin):
    """One account's own thresholds for a rule, in place of the ALARM_* settings (read at the next
    evaluation, no restart)."""

    list_display = ["account", "rule", "enabled", "value", "min_outcomes"]
    list_editable = ["enabled", "value", "min_outcomes"]
    list_filter = ["rule", "account"]


@admin.register(AlarmEvaluator)
class AlarmEvaluatorAdmin(ReadOnlyAdmin):
    """Which poller evaluates the alarms, and how its last evaluation went."""

    list_display = ["lease_owner", "lease_until", "last_evaluated_at", "last_seconds", "last_error"]
