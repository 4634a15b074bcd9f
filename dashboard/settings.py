"""Flat settings read from the environment; the defaults run a bare checkout.

Everything that differs between a laptop and production is an environment variable.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or development_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

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
    "dashboard",
    "dashboard.simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL scheme {parts.scheme!r} is not supported (use postgres://)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 60,
    }


if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                # The simulator and the dashboard write from several server threads at once.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory, so the live server's threads each get their own connection;
            # one per process, so test runs side by side don't share it.
            "TEST": {"NAME": str(BASE_DIR / f"test-db-{os.getpid()}.sqlite3")},
        }
    }

if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES")
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES")

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

# --- Dashboard -----------------------------------------------------------------------------
PORT = os.environ.get("PORT", "8000")
# Where the dashboard finds the embedded simulator when no real account is configured.
SIMULATOR_BASE_URL = os.environ.get("SIMULATOR_BASE_URL", f"http://127.0.0.1:{PORT}/simulator")
UPSTREAM_TIMEOUT_SECONDS = float(os.environ.get("UPSTREAM_TIMEOUT_SECONDS", "10"))
UPSTREAM_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "3"))
# How often a live row asks for news, and how long an upstream answer is shared between viewers.
ROW_POLL_SECONDS = int(os.environ.get("ROW_POLL_SECONDS", "3"))
# Sharing answers for one poll interval keeps upstream load flat however many people watch.
UPSTREAM_CACHE_SECONDS = float(os.environ.get("UPSTREAM_CACHE_SECONDS", str(ROW_POLL_SECONDS)))
LIST_PAGE_SIZE = int(os.environ.get("LIST_PAGE_SIZE", "25"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "batch-list"
LOGOUT_REDIRECT_URL = "login"
