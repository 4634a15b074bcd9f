from django.urls import path, re_path

from . import anthropic_api, openai_api
from .wire import unknown_route

app_name = "simulator"

anthropic_batch = "anthropic/v1/messages/batches/<str:batch_id>"
openai_prefix = "openai/v1"
# Every other path under a provider, newlines and all, gets that provider's own 404.

urlpatterns = [
    path("anthropic/v1/messages/batches", anthropic_api.batches, name="anthropic-batches"),
    path(anthropic_batch, anthropic_api.batch_detail, name="anthropic-batch"),
    path(f"{anthropic_batch}/cancel", anthropic_api.cancel_batch, name="anthropic-cancel"),
    path(f"{anthropic_batch}/results", anthropic_api.batch_results, name="anthropic-results"),
    re_path(r"^anthropic/(?P<rest>(?s:.*))$", unknown_route(anthropic_api.DIALECT)),
    path(f"{openai_prefix}/files", openai_api.files, name="openai-files"),
    path(f"{openai_prefix}/files/<str:file_id>", openai_api.file_detail, name="openai-file"),
    path(f"{openai_prefix}/files/<str:file_id>/content", openai_api.file_content, name="openai-file-content"),
    path(f"{openai_prefix}/batches", openai_api.batches, name="openai-batches"),
    path(f"{openai_prefix}/batches/<str:batch_id>", openai_api.batch_detail, name="openai-batch"),
    path(f"{openai_prefix}/batches/<str:batch_id>/cancel", openai_api.cancel_batch, name="openai-cancel"),
    re_path(r"^openai/(?P<rest>(?s:.*))$", unknown_route(openai_api.DIALECT)),
]
