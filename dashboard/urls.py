from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from .metrics import views as metrics_views
from .web import alarm_views, bulk_views, health, sign_in, spend_views, sso, views

batch = "batches/<slug:account_key>/<str:batch_id>"

urlpatterns = [
    path("", views.batch_list, name="batch-list"),
    path(f"{batch}/", views.batch_detail, name="batch-detail"),
    path(f"{batch}/row", views.batch_row, name="batch-row"),
    path(f"{batch}/results/summary", views.batch_results_summary, name="batch-results-summary"),
    path(f"{batch}/results/download", views.batch_results_download, name="batch-results-download"),
    path(f"{batch}/results/export.csv", views.batch_results_export, name="batch-results-export"),
    path("audit/", views.audit_log, name="audit-log"),
    path("spend/", spend_views.spend_page, name="spend"),
    path(f"{batch}/alarms", alarm_views.batch_alarms, name="batch-alarms"),
    path("alarms/", alarm_views.alarm_list, name="alarm-list"),
    path("alarms/badge", alarm_views.alarm_badge, name="alarm-badge"),
    path("alarms/<int:pk>/acknowledge", alarm_views.alarm_acknowledge, name="alarm-acknowledge"),
    path(f"{batch}/cancel", views.batch_cancel, name="batch-cancel"),
    path("summary", views.list_header, name="list-header"),
    path("bulk-cancel/", bulk_views.operations, name="bulk-cancel-list"),
    path("bulk-cancel/preview", bulk_views.preview, name="bulk-cancel-preview"),
    path("bulk-cancel/confirm", bulk_views.confirm, name="bulk-cancel-confirm"),
    path("bulk-cancel/<int:operation_id>/", bulk_views.progress, name="bulk-cancel-progress"),
    path("login/", sign_in.SignInView.as_view(), name="login"),
    path("logout/", sso.sign_out, name="logout"),
    path("sso/sign-in", sso.sign_in_with_sso, name="oidc_authentication_init"),
    path("sso/callback", sso.sso_callback, name="oidc_authentication_callback"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics_views.metrics_view, name="metrics"),
]

if settings.SIMULATOR_ENABLED:
    urlpatterns.append(path(settings.SIMULATOR_URL_PREFIX, include("dashboard.simulator.urls")))
