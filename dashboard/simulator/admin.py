from django.contrib import admin, messages

from . import stall
from .models import SimAccount, SimBatch, SimFile


@admin.register(SimAccount)
class SimAccountAdmin(admin.ModelAdmin):
    list_display = ["provider", "name", "fault", "latency_ms", "retry_after_seconds"]
    list_editable = ["fault", "latency_ms", "retry_after_seconds"]
    readonly_fields = ["key_sha256"]


@admin.register(SimBatch)
class SimBatchAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "account",
        "created_at",
        "total",
        "processing_seconds",
        "cancel_initiated_at",
        "stalled_at",
        "is_demo",
    ]
    list_filter = ["account", "is_demo"]
    search_fields = ["public_id"]
    raw_id_fields = ["input_file"]
    actions = ["stall_batches", "release_batches"]

    @admin.action(description="Stall the selected batches (their counts stop moving)")
    def stall_batches(self, request, queryset) -> None:
        done = sum(stall.stall(public_id) for public_id in queryset.values_list("public_id", flat=True))
        self.message_user(request, f"{done} batch(es) stalled until released.", messages.SUCCESS)

    @admin.action(description="Release the selected batches (they resume where they stopped)")
    def release_batches(self, request, queryset) -> None:
        done = sum(stall.release(public_id) for public_id in queryset.values_list("public_id", flat=True))
        self.message_user(request, f"{done} batch(es) released.", messages.SUCCESS)


@admin.register(SimFile)
class SimFileAdmin(admin.ModelAdmin):
    list_display = ["public_id", "account", "purpose", "filename", "created_at"]
    exclude = ["content"]
