from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html

from .access import services as access_services
from .alarms import services as alarm_services
from .models import (
    AccessChange,
    AccessGrant,
    AccountState,
    Alarm,
    AlarmEvaluator,
    AlarmRule,
    AlarmThreshold,
    BatchTokens,
    BulkCancel,
    BulkCancelItem,
    CancelAttempt,
    Delivery,
    NotificationChannel,
    NotificationEvent,
    PollerHeartbeat,
    ResultsSummary,
    StoredBatch,
)
from .notifications import channels, dispatch


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

    list_display = [
        "requested_at",
        "actor",
        "via",
        "account",
        "batch_id",
        "outcome",
        "status_after",
        "finished_at",
        "reconciled_at",
    ]
    # Reconciled: its process died before recording upstream's answer, settled later from upstream.
    list_filter = ["outcome", "via", "account", ("reconciled_at", admin.EmptyFieldListFilter)]
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


@admin.register(PollerHeartbeat)
class PollerHeartbeatAdmin(ReadOnlyAdmin):
    """The pollers running (their last beat within POLL_HEARTBEAT_SECONDS) and lately dead."""

    list_display = ["owner", "started_at", "beat_at"]


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
        recorded = 0
        for alarm in queryset:
            try:
                alarm_services.acknowledge(alarm=alarm, user=request.user, note="acknowledged in the admin")
                recorded += 1
            except alarm_services.AcknowledgeRefused:
                pass
        left = len(queryset) - recorded
        skipped = f"; {left} left as they were (already acknowledged, or resolved)" if left else ""
        self.message_user(request, f"{recorded} alarm(s) acknowledged{skipped}.", messages.SUCCESS)


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


# --- Notifications (dashboard/notifications/) ------------------------------------------------------


class NotificationChannelForm(forms.ModelForm):
    """Rules and events as checkboxes, accounts as comma-separated keys (all three: none means every one)."""

    rules = forms.MultipleChoiceField(
        choices=AlarmRule.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every rule.",
    )
    events = forms.MultipleChoiceField(
        choices=NotificationEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: both.",
    )
    accounts = forms.CharField(
        required=False,
        help_text="Account keys, comma-separated (e.g. openai-ops, anthropic-default); empty: every account.",
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "target", "target_env", "secret_env", "rules", "accounts", "events", "enabled"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["accounts"] = ", ".join(self.instance.accounts or [])

    def clean_accounts(self) -> list[str]:
        return [key.strip() for key in self.cleaned_data["accounts"].split(",") if key.strip()]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if name.startswith(channels.ENV_PREFIX):
            raise forms.ValidationError(f"Names starting {channels.ENV_PREFIX} are the environment's channels.")
        return name


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    """Where alarm changes are sent. The environment's channels (NOTIFY_* variables) are shown
    read-only: change the variables instead. No URL that is a credential and no secret is shown."""

    form = NotificationChannelForm
    list_display = [
        "name",
        "kind",
        "where",
        "rules_sent",
        "accounts_sent",
        "events_sent",
        "enabled",
        "from_environment",
    ]
    list_filter = ["kind", "enabled", "from_environment"]

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and not (obj is not None and obj.from_environment)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.from_environment)

    @admin.display(description="target")
    def where(self, channel: NotificationChannel) -> str:
        """A Slack webhook's URL is its credential: only its host is shown; a variable by its name."""
        if channel.target_env:
            return f"${channel.target_env}"
        if channel.kind == NotificationChannel.Kind.EMAIL:
            return channel.target
        return urlsplit(channel.target).hostname or "?"

    @admin.display(description="rules")
    def rules_sent(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.rules) or "every rule"

    @admin.display(description="accounts")
    def accounts_sent(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.accounts) or "every account"

    @admin.display(description="events")
    def events_sent(self, channel: NotificationChannel) -> str:
        return ", ".join(channel.events) or "both"


def with_task_status(rows):
    """Each row with its background task's status (`task_status`), in the same query."""
    from django_tasks_db.models import DBTaskResult

    status = DBTaskResult.objects.filter(pk=OuterRef("task_id")).values("status")[:1]
    return rows.annotate(task_status=Subquery(status))


def task_link(row) -> str:
    """The row's task: its status, linked to the task's own admin page (django-tasks-db's)."""
    if row.task_id is None:
        return "—"
    if not row.task_status:
        return "no longer stored"
    from django_tasks_db.models import DBTaskResult

    meta = DBTaskResult._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.task_id])
    return format_html('<a href="{}">{}</a>', url, row.task_status.lower())


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """The notification outbox: what was sent, what is failing and when it is tried next. Staff with
    the permission may make deliveries due at once ("retry now")."""

    list_display = [
        "created_at",
        "channel",
        "event",
        "rule",
        "subject",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
        "task",
    ]
    list_filter = ["status", "event", "channel"]
    search_fields = ["key", "last_error", "alarm__account", "alarm__batch__batch_id"]
    date_hierarchy = "created_at"
    list_select_related = ["channel"]
    exclude = ["claimed_by"]
    actions = ["retry_now"]

    def get_queryset(self, request):
        return with_task_status(super().get_queryset(request))

    @admin.display(description="task")
    def task(self, delivery: Delivery) -> str:
        return task_link(delivery)

    @admin.display(description="rule")
    def rule(self, delivery: Delivery) -> str:
        return delivery.payload.get("alarm", {}).get("rule_label", "")

    @admin.display(description="account / batch")
    def subject(self, delivery: Delivery) -> str:
        alarm = delivery.payload.get("alarm", {})
        return " / ".join(part for part in (alarm.get("account"), alarm.get("batch_id")) if part)

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("dashboard.retry_delivery")

    @admin.action(description="Retry the selected deliveries now", permissions=["retry"])
    def retry_now(self, request, queryset) -> None:
        made_due = dispatch.retry_now(queryset)
        skipped = len(queryset) - made_due
        message = f"{made_due} deliver{'y' if made_due == 1 else 'ies'} will be sent within seconds, by a worker."
        if skipped:
            message += f" {skipped} already sent: not sent again."
        self.message_user(request, message, messages.SUCCESS)


class BulkCancelItemInline(admin.TabularInline):
    model = BulkCancelItem
    fields = ["position", "account", "batch_id", "state", "message", "attempt", "finished_at"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BulkCancel)
class BulkCancelAdmin(ReadOnlyAdmin):
    """Bulk cancels, one audited operation each, with every batch's outcome (each also a CancelAttempt)."""

    list_display = ["created_at", "actor", "total", "confirmed", "finished_at", "task"]
    date_hierarchy = "created_at"
    inlines = [BulkCancelItemInline]

    def get_queryset(self, request):
        return with_task_status(super().get_queryset(request))

    @admin.display(description="task")
    def task(self, operation: BulkCancel) -> str:
        return task_link(operation)


@admin.register(ResultsSummary)
class ResultsSummaryAdmin(ReadOnlyAdmin):
    """Error summaries of ended batches, counted once from the provider's results."""

    list_display = ["batch", "sources", "total"]
    search_fields = ["batch__batch_id"]


@admin.register(BatchTokens)
class BatchTokensAdmin(ReadOnlyAdmin):
    """Tokens per batch and model, by kind, read from the batch object or summed from its results."""

    list_display = ["batch", "model", "input", "cache_read", "cache_write", "output", "reasoning", "requests"]
    list_filter = ["model"]
    search_fields = ["batch__batch_id", "model"]


# --- access: grants of roles on accounts to groups, and their audit trail --------------------------


class AccessGrantForm(forms.ModelForm):
    class Meta:
        model = AccessGrant
        fields = ["group", "accounts", "role"]

    def clean_accounts(self) -> str:
        patterns = access_services.account_patterns(self.cleaned_data["accounts"])
        if len(patterns) != 1:
            raise forms.ValidationError("One account or pattern per grant (add one grant for each).")
        return patterns[0]


@admin.register(AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    """Grants are given and revoked, never edited in place: each change is one audited act."""

    form = AccessGrantForm
    list_display = ["group", "role", "accounts", "granted_by", "granted_at"]
    list_filter = ["role", "group"]
    search_fields = ["group__name", "accounts"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        made = access_services.grant(
            group_name=obj.group.name,
            patterns=[obj.accounts],
            role=access_services.role_named(obj.role),
            actor=request.user.get_username(),
            via="web",
            user=request.user,
        )
        if made:
            obj.pk = made[0].pk
        else:
            obj.pk = AccessGrant.objects.get(group=obj.group, accounts=obj.accounts, role=obj.role).pk

    def delete_model(self, request, obj) -> None:
        access_services.revoke_grants([obj], actor=request.user.get_username(), via="web", user=request.user)

    def delete_queryset(self, request, queryset) -> None:
        access_services.revoke_grants(
            list(queryset.select_related("group")), actor=request.user.get_username(), via="web", user=request.user
        )


@admin.register(AccessChange)
class AccessChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "via", "action", "group", "role", "accounts"]
    list_filter = ["action", "role", "via"]
    search_fields = ["actor", "group", "accounts"]
