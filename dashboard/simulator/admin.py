from django.contrib import admin

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
        "is_demo",
    ]
    list_filter = ["account", "is_demo"]
    search_fields = ["public_id"]
    raw_id_fields = ["input_file"]


@admin.register(SimFile)
class SimFileAdmin(admin.ModelAdmin):
    list_display = ["public_id", "account", "purpose", "filename", "created_at"]
    exclude = ["content"]
