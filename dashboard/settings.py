"""Flat settings read from the environment; the defaults run a bare checkout.

Everything that differs between a laptop and production is an environment variable.
"""

import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from . import providers
from .providers.transport import DEFAULT_DEADLINES

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def development_secret_key() -> str:
    """A per-checkout random key, kept in a git-ignored file so sessions survive restarts."""
    key_file = BASE_DIR / ".secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or development_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")


# Real accounts come from the official SDKs' variables or an accounts file (dashboard/accounts.py).
def real_account_configured(module) -> bool:
    """Whether the environment configures an account of this provider; one it configures wrongly
    (an Azure key without its endpoint) counts, and dashboard/accounts.py says what is wrong."""
    try:
        return bool(module.from_environment(os.environ))
    except ValueError:
        return True


REAL_ACCOUNTS_CONFIGURED = bool(os.environ.get("BATCH_ACCOUNTS_FILE")) or any(
    real_account_configured(module) for module in providers.PROVIDERS.values()
)
# The embedded simulator (its API under /simulator/ and its demo accounts) exists only when this
# is on; by default only while no real account is configured, so a bare checkout runs on it and a
# deployment with real keys does not expose it.
SIMULATOR_ENABLED = env_bool("SIMULATOR_ENABLED", not REAL_ACCOUNTS_CONFIGURED)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "django_tasks",
    "django_tasks_db",
    "dashboard",
    *(["dashboard.simulator"] if SIMULATOR_ENABLED else []),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    # Before anything reads the Host (CommonMiddleware) or the session.
    "dashboard.web.health.HealthzForAnyHostMiddleware",
    "dashboard.web.middleware.RefuseUnstorableTextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's LoginRequiredMiddleware; an htmx request not signed in moves the whole page to sign in.
    "dashboard.web.middleware.HtmxAwareLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite in the checkout by default; any URL dj-database-url reads (postgres://, sqlite:///) otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{os.environ.get('SQLITE_PATH', BASE_DIR / 'db.sqlite3')}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that stops answering (a partition, not a refusal) must not hang a request or
    # the poller until the operating system gives up: connecting waits this long at most.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT_SECONDS", 5)
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Kept open per server thread like PostgreSQL's: opening one costs ~1 ms of a ~5 ms row poll.
    DATABASES["default"]["OPTIONS"] = {
        # The simulator and the dashboard write from several server threads at once.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so the live server's threads each get their own connection; one per
    # process, so test runs (and xdist workers) side by side don't share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"batch-dashboard-test-{os.getpid()}.sqlite3")
    }

# Without Redis the cache is per process: the production server then runs one process (see
# dashboard/gunicorn.py), and several processes or machines need REDIS_URL to share answers.
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            # redis-py waits forever by default: a Redis that stops answering would hang every request.
            "OPTIONS": {
                "socket_connect_timeout": env_int("REDIS_TIMEOUT_SECONDS", 5),
                "socket_timeout": env_int("REDIS_TIMEOUT_SECONDS", 5),
            },
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 20_000}}
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only a deployment that runs collectstatic names a STATIC_ROOT.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
# Finders serve straight from the source folders, so a bare checkout needs no collectstatic.
WHITENOISE_USE_FINDERS = True

# --- Security ----------------------------------------------------------------------------
# Production behind TLS sets these (production.env.example has them all; README explains).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
# "HTTP_X_FORWARDED_PROTO,https": trust the reverse proxy's word that the request came over TLS.
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if len(_proxy_ssl_header) == 2 else None
# The health check answers load balancers over plain HTTP, on whatever host name they use.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES")
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES")
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Everything from our own origin, nothing inline: htmx's own indicator styles are switched off
# in base.html, and no template carries a style or script attribute.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user name
# from one address, that pair is locked out for LOGIN_LOCKOUT_MINUTES, the right password included.
# The address is the connection's, or behind the reverse proxies named in TRUSTED_PROXIES (addresses
# or networks) the client's as they forward it in X-Forwarded-For (dashboard/web/client_address.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")
AXES_CLIENT_IP_CALLABLE = "dashboard.web.client_address.client_address"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "dashboard.web.auth.CachedPermissionsBackend",
]

# Whom a signed-in user without any grant is told to ask (README "Teams and sign-in").
ACCESS_CONTACT = os.environ.get("ACCESS_CONTACT", "") or "whoever runs this dashboard"

# Single sign-on with OpenID Connect (dashboard/web/sso.py; README "Teams and sign-in"): on when
# OIDC_ISSUER is set. SSO_ONLY=1 turns the password form off.
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "").strip().rstrip("/")
SSO_ENABLED = bool(OIDC_ISSUER)
SSO_ONLY = SSO_ENABLED and env_bool("SSO_ONLY", False)
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_SCOPES", "openid email profile")
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "groups")
OIDC_USERNAME_CLAIM = os.environ.get("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = True  # for the provider's sign-out (id_token_hint)
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT_SECONDS", 10)
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
if SSO_ENABLED:
    if not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
        raise ImproperlyConfigured("OIDC_ISSUER is set: set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET too.")
    AUTHENTICATION_BACKENDS.append("dashboard.web.sso.SsoBackend")


def allowing_sign_out_at(policy: dict, issuer: str) -> dict:
    """The Content-Security-Policy with the identity provider's origin in form-action: signing out
    is a form POST that the browser follows to the provider's end_session_endpoint, and Chromium
    holds a form's redirects to form-action too."""
    scheme, _, rest = issuer.partition("://")
    origin = f"{scheme}://{rest.split('/', 1)[0]}"
    directives = {**policy["DIRECTIVES"], "form-action": [*policy["DIRECTIVES"]["form-action"], origin]}
    return {**policy, "DIRECTIVES": directives}


if SSO_ENABLED:
    CONTENT_SECURITY_POLICY = allowing_sign_out_at(CONTENT_SECURITY_POLICY, OIDC_ISSUER)
PERMISSIONS_CACHE_SECONDS = env_int("PERMISSIONS_CACHE_SECONDS", 30)
# Every live row's poll is a request: its session is read from the cache, not the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "dashboard.web.sign_in.locked_out"
AXES_VERBOSE = False

# Error reports (DEBUG pages, mail to admins) hide every configured account's key, whatever the
# name of the variable that holds it.
DEFAULT_EXCEPTION_REPORTER_FILTER = "dashboard.error_reports.SecretHidingFilter"
DEFAULT_EXCEPTION_REPORTER = "dashboard.error_reports.SecretHidingReporter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs full request URLs at INFO; keep it quiet so nothing upstream leaks by default.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Simulator -----------------------------------------------------------------------------
# How long a newly created simulated batch takes to process all of its requests.
SIMULATOR_PROCESSING_SECONDS = float(os.environ.get("SIMULATOR_PROCESSING_SECONDS", "120"))
# How long a canceling/cancelling batch keeps finishing in-flight requests before it ends.
SIMULATOR_CANCEL_SECONDS = float(os.environ.get("SIMULATOR_CANCEL_SECONDS", "8"))
# OpenAI only: time spent in `validating` and in `finalizing`.
SIMULATOR_VALIDATING_SECONDS = float(os.environ.get("SIMULATOR_VALIDATING_SECONDS", "3"))
SIMULATOR_FINALIZING_SECONDS = float(os.environ.get("SIMULATOR_FINALIZING_SECONDS", "3"))
# Share of requests that error, and (Anthropic) that expire, in percent.
SIMULATOR_ERROR_PERCENT = int(os.environ.get("SIMULATOR_ERROR_PERCENT", "8"))
SIMULATOR_EXPIRE_PERCENT = int(os.environ.get("SIMULATOR_EXPIRE_PERCENT", "2"))
# How long the `hang` fault holds a request before answering (past any sane client timeout).
SIMULATOR_HANG_SECONDS = float(os.environ.get("SIMULATOR_HANG_SECONDS", "30"))
# Where ended batches' results files are kept once rendered (empty: a directory under the temp dir).
SIMULATOR_RESULTS_DIR = os.environ.get("SIMULATOR_RESULTS_DIR", "")

# --- Dashboard -----------------------------------------------------------------------------
PORT = os.environ.get("PORT", "8000")
# Where the dashboard finds the simulator for its demo accounts. Empty (the default): in process,
# through httpx's WSGI interface on a thread pool of its own, so a server can never deadlock
# waiting on itself whatever its workers. A URL (e.g. http://127.0.0.1:8001/simulator): over HTTP.
SIMULATOR_BASE_URL = os.environ.get("SIMULATOR_BASE_URL", "")
# Where the simulator's API is served (its own app, with its own answers to bad requests).
SIMULATOR_URL_PREFIX = "simulator/"
# The host name of in-process calls to the simulator; .invalid never resolves to anything.
EMBEDDED_SIMULATOR_HOST = "embedded-simulator.invalid"
if SIMULATOR_ENABLED and not SIMULATOR_BASE_URL and "*" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(EMBEDDED_SIMULATOR_HOST)
UPSTREAM_TIMEOUT_SECONDS = float(os.environ.get("UPSTREAM_TIMEOUT_SECONDS", "10"))
UPSTREAM_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "3"))
# The timeouts above bound each read; these bound a whole upstream call, connect to last byte,
# however slowly the upstream trickles: a JSON answer (list, retrieve, cancel), and a streamed
# result file (the results pages and downloads), which may take much longer.
UPSTREAM_DEADLINE_SECONDS = float(os.environ.get("UPSTREAM_DEADLINE_SECONDS", DEFAULT_DEADLINES.call))
UPSTREAM_DOWNLOAD_DEADLINE_SECONDS = float(
    os.environ.get("UPSTREAM_DOWNLOAD_DEADLINE_SECONDS", DEFAULT_DEADLINES.download)
)
# How often a live page (list, detail, alarms) asks what changed since its last look (web/live.py).
ROW_POLL_SECONDS = int(os.environ.get("ROW_POLL_SECONDS", "3"))
LIST_PAGE_SIZE = int(os.environ.get("LIST_PAGE_SIZE", "25"))
# The poller (manage.py poll): how often an account with running batches is polled, and one without.
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "3"))
POLL_IDLE_SECONDS = float(os.environ.get("POLL_IDLE_SECONDS", "30"))
# Retrieves in flight at once per account, for running batches the listing does not cover cheaper.
POLL_CONCURRENCY = int(os.environ.get("POLL_CONCURRENCY", "8"))
# Accounts a poller polls at once (threads, each mostly waiting on its upstream, kept with a database
# connection each): with ~200 ms per upstream call, 8 poll ~60 accounts every POLL_SECONDS (bench/pollers.py);
# past that, add pollers, or raise it (16: ~10 MiB more per poller, bench/poller_memory.py).
POLL_ACCOUNT_CONCURRENCY = int(os.environ.get("POLL_ACCOUNT_CONCURRENCY", "8"))
# Ended batches whose results (error summary and tokens) the poller counts per account and cycle, after
# its poll, so that spend counts every ended batch whether or not anyone opens it: one, so that a cycle
# waits for at most one results file per account (a 100,000-line batch is about a second: bench/tokens.py).
POLL_RESULTS_PER_CYCLE = int(os.environ.get("POLL_RESULTS_PER_CYCLE", "1"))
# A poller is live while its last heartbeat is at most this old: a killed poller's accounts are taken over
# by the others once it is (each poller beats every third of it, whatever its cycles take), and the
# accounts are shared among the live pollers. Not below POLL_SECONDS.
POLL_HEARTBEAT_SECONDS = max(POLL_SECONDS, float(os.environ.get("POLL_HEARTBEAT_SECONDS") or 2 * POLL_SECONDS))
# How long a poller's hold on an account lasts unless renewed (each heartbeat renews it): it frees the
# accounts of an owner without a heartbeat row at all.
POLL_LEASE_SECONDS = float(os.environ.get("POLL_LEASE_SECONDS", str(max(30.0, 10 * POLL_SECONDS))))
# How long a bulk cancel item's claim lasts unless renewed (dashboard/bulk/operations.py): past any cancel call.
# 0 (the default): 4 × the upstream timeouts, at least 60 s.
BULK_CANCEL_CLAIM_SECONDS = float(os.environ.get("BULK_CANCEL_CLAIM_SECONDS") or 0)

# --- Background work (dashboard/background.py): bulk cancels and notification deliveries are tasks -------
# Django's tasks API (django-tasks) on its database backend: the queue is a table of the dashboard's own
# database, SQLite or PostgreSQL, and `manage.py work` (the Procfile's worker) runs what it holds.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["bulk", "notifications"],
    }
}
# Threads per queue of one worker process: a bulk cancel occupies one for its whole operation (its items
# one at a time), a notification one for a send (NOTIFY_TIMEOUT_SECONDS at most).
WORKER_THREADS = env_int("WORKER_THREADS", 2)
# How often a worker looks for work nobody runs: deliveries due, bulk cancels whose worker died.
WORKER_SWEEP_SECONDS = float(os.environ.get("WORKER_SWEEP_SECONDS", "2"))
# Finished tasks (their runs, times and a failure's traceback) are kept this long, then deleted by the
# workers' sweep: the bulk cancel and notification rows keep their own outcome for good.
TASK_RESULTS_KEEP_DAYS = env_int("TASK_RESULTS_KEEP_DAYS", 14)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "batch-list"
LOGOUT_REDIRECT_URL = "login"
# A refused CSRF check (a stale token after signing in again in another tab) in the operator's words.
CSRF_FAILURE_VIEW = "dashboard.web.sign_in.csrf_failure"

# --- Metrics (/metrics, Prometheus; dashboard/metrics/) -----------------------------------------
# Off (404, and no upstream call is counted) unless one of these is set. With both, a scrape needs
# both: the token, from an allowed address. Signed-in staff users may read it in the browser.
# A bearer token for scrapers: `Authorization: Bearer <METRICS_TOKEN>` (32+ random characters).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Addresses and networks (e.g. "10.0.0.0/8,127.0.0.1") checked against REMOTE_ADDR: behind a reverse
# proxy that is the proxy's address, never the scraper's (X-Forwarded-For is not read).
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "")
# How often each process adds the upstream calls it counted to the database, at most.
METRICS_FLUSH_SECONDS = float(os.environ.get("METRICS_FLUSH_SECONDS", "1"))

# --- Alarms (dashboard/alarms/), evaluated by the poller after each cycle ---------------------
# The defaults of every account; an account's own (AlarmThreshold rows) are edited in the admin.
ALARMS_ENABLED = env_bool("ALARMS_ENABLED", True)
# Stuck: not ended, and no change of status or counts for this long. For a provider that reports
# outcomes only at the end, running longer than 95% of the account's ended batches (of a similar
# size when there are enough of them) instead, once it has ALARM_STUCK_MIN_HISTORY of them.
ALARM_STUCK_MINUTES = float(os.environ.get("ALARM_STUCK_MINUTES", "30"))
ALARM_STUCK_MIN_HISTORY = env_int("ALARM_STUCK_MIN_HISTORY", 20)
# Expiring: requests still unfinished and less than this long before the batch's expires_at.
ALARM_EXPIRING_HOURS = float(os.environ.get("ALARM_EXPIRING_HOURS", "2"))
# Error rate (running batches): more than this share of the requests with an outcome errored, once
# at least ALARM_ERROR_RATE_MIN_OUTCOMES have one.
ALARM_ERROR_RATE_PERCENT = float(os.environ.get("ALARM_ERROR_RATE_PERCENT", "10"))
ALARM_ERROR_RATE_MIN_OUTCOMES = env_int("ALARM_ERROR_RATE_MIN_OUTCOMES", 50)
# Ended badly: failed, expired, or ended with more than this share errored; open for this many
# hours after the end, then resolved by itself.
ALARM_ENDED_BADLY_PERCENT = float(os.environ.get("ALARM_ENDED_BADLY_PERCENT", "10"))
ALARM_ENDED_BADLY_HOURS = float(os.environ.get("ALARM_ENDED_BADLY_HOURS", "24"))
# Account failing: its polls have failed, with no success, for this long.
ALARM_ACCOUNT_FAILING_MINUTES = float(os.environ.get("ALARM_ACCOUNT_FAILING_MINUTES", "10"))
# Budgets (alarm thresholds "daily/monthly budget spent", in US dollars, per account or * for all): the
# "nearly spent" alarm opens at this share of a budget, unless its own threshold row says otherwise.
ALARM_BUDGET_NEAR_PERCENT = float(os.environ.get("ALARM_BUDGET_NEAR_PERCENT", "80"))

# Spend (dashboard/spend): a JSON file of negotiated rates, in the format of dashboard/spend/prices.json; its
# entries replace the shipped list prices of the same provider and model, or add models. Checked at start.
PRICES_FILE = os.environ.get("PRICES_FILE", "").strip()

# --- Notifications (dashboard/notifications/): alarm changes to Slack, webhooks and email ---------
# Channels are made in the admin, or from NOTIFY_SLACK_WEBHOOK_URL, NOTIFY_WEBHOOK_URL (+
# NOTIFY_WEBHOOK_SECRET) and NOTIFY_EMAIL_TO, read from the environment by notifications/channels.py itself
# (like the accounts' keys: a URL or a secret never sits in the settings). The pollers write the outbox;
# workers send each delivery as a task, at least once, retried with exponential backoff and jitter.
# The dashboard's public address (https://dash.example.com): notifications link to the batch's page.
DASHBOARD_URL = os.environ.get("DASHBOARD_URL", "").rstrip("/")
# A whole send, connect to last byte (a webhook or Slack POST; an email's SMTP conversation).
NOTIFY_TIMEOUT_SECONDS = float(os.environ.get("NOTIFY_TIMEOUT_SECONDS", "5"))
# The first retry after about this long, doubling each time up to the most; given up after the attempts.
NOTIFY_RETRY_SECONDS = float(os.environ.get("NOTIFY_RETRY_SECONDS", "30"))
NOTIFY_RETRY_MAX_SECONDS = float(os.environ.get("NOTIFY_RETRY_MAX_SECONDS", "3600"))
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 10)
# A send's claim outlasts its time limit by this much: a delivery whose worker vanished mid-send is tried
# again that long after the send's limit.
NOTIFY_CLAIM_MARGIN_SECONDS = float(os.environ.get("NOTIFY_CLAIM_MARGIN_SECONDS", "30"))
# Deliveries sent at once (each on a thread of its own) by one call of dispatch.deliver_due.
NOTIFY_BATCH_SIZE = env_int("NOTIFY_BATCH_SIZE", 10)
# Slack and webhook channels reach public addresses only (dashboard/notifications/destinations.py). These host
# names (whatever they resolve to), addresses and networks (10.0.0.0/8) may be private, loopback or
# link-local; a cloud metadata address never is. E.g. "alerts.internal, 10.20.0.0/16".
NOTIFY_ALLOWED_HOSTS = env_list("NOTIFY_ALLOWED_HOSTS", "")
# Email goes through Django's email backend: SMTP by default.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = NOTIFY_TIMEOUT_SECONDS
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "batch-dashboard@localhost")
