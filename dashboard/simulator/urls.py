from django.urls import path, re_path

from . import anthropic_api, azure_openai_api, bedrock_api, gemini_api, openai_api
from .wire import unknown_route

app_name = "simulator"

anthropic_batch = "anthropic/v1/messages/batches/<str:batch_id>"
gemini_prefix = "gemini/v1beta"
# Every other path under a provider, newlines and all, gets that provider's own 404.

urlpatterns = [
    path("anthropic/v1/messages/batches", anthropic_api.batches, name="anthropic-batches"),
    path(anthropic_batch, anthropic_api.batch_detail, name="anthropic-batch"),
    path(f"{anthropic_batch}/cancel", anthropic_api.cancel_batch, name="anthropic-cancel"),
    path(f"{anthropic_batch}/results", anthropic_api.batch_results, name="anthropic-results"),
    re_path(r"^anthropic/(?P<rest>(?s:.*))$", unknown_route(anthropic_api.DIALECT)),
    *openai_api.routes(openai_api.DIALECT, "openai/v1", "openai"),
    re_path(r"^openai/(?P<rest>(?s:.*))$", unknown_route(openai_api.DIALECT)),
    *openai_api.routes(azure_openai_api.V1, "azure-openai/openai/v1", "azure-openai-v1"),
    *openai_api.routes(azure_openai_api.GA, "azure-openai/openai", "azure-openai"),
    re_path(r"^azure-openai/(?P<rest>(?s:.*))$", azure_openai_api.unknown_route),
    # Bedrock's job identifier may be an ARN, whose "/" arrives decoded: the stop route is matched first.
    path("bedrock/model-invocation-jobs", bedrock_api.list_jobs, name="bedrock-jobs"),
    path("bedrock/model-invocation-job", bedrock_api.create_job, name="bedrock-create"),
    re_path(r"^bedrock/model-invocation-job/(?P<job>(?s:.+))/stop$", bedrock_api.stop_job, name="bedrock-stop"),
    re_path(r"^bedrock/model-invocation-job/(?P<job>(?s:.+))$", bedrock_api.get_job, name="bedrock-job"),
    re_path(r"^bedrock/(?P<rest>(?s:.*))$", unknown_route(bedrock_api.DIALECT)),
    # Gemini's methods follow a colon in the last segment (batches/{id}:cancel): matched before the plain ones.
    path(f"{gemini_prefix}/batches", gemini_api.batches, name="gemini-batches"),
    re_path(rf"^{gemini_prefix}/batches/(?P<batch_id>[^/]+):cancel$", gemini_api.cancel_batch, name="gemini-cancel"),
    path(f"{gemini_prefix}/batches/<str:batch_id>", gemini_api.batch_detail, name="gemini-batch"),
    re_path(
        rf"^{gemini_prefix}/models/(?P<model>[^/:]+):batchGenerateContent$",
        gemini_api.create_batch,
        name="gemini-create",
    ),
    path("gemini/upload/v1beta/files", gemini_api.upload_files, name="gemini-upload"),
    re_path(rf"^{gemini_prefix}/files/(?P<file_id>[^/:]+):download$", gemini_api.file_download, name="gemini-download"),
    re_path(r"^gemini/download/v1beta/files/(?P<file_id>[^/:]+):download$", gemini_api.file_download),
    path(f"{gemini_prefix}/files/<str:file_id>", gemini_api.file_detail, name="gemini-file"),
    re_path(r"^gemini/(?P<rest>(?s:.*))$", unknown_route(gemini_api.DIALECT)),
]
