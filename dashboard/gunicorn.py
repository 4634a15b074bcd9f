"""gunicorn settings for `make run` / `make serve` and production, all from the environment.

    gunicorn --config python:dashboard.gunicorn dashboard.wsgi

Threaded workers (gthread): a worker waiting on an upstream answer holds one thread, not a whole
process. The defaults fit a 2-core machine. Without REDIS_URL the cache lives in each process, so
the default is then one process (whose threads share it); with Redis, two.
"""

import os
import sys

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = os.environ.get("WEB_WORKER_CLASS") or "gthread"
workers = int(os.environ.get("WEB_WORKERS") or (2 if os.environ.get("REDIS_URL") else 1))
threads = int(os.environ.get("WEB_THREADS") or 16)
# A worker that shows no sign of life for this long is restarted; requests have their own deadlines.
timeout = int(os.environ.get("WEB_TIMEOUT") or 60)
graceful_timeout = 20
keepalive = 5
# Access log to stdout with ACCESS_LOG=1 (or a file path); errors always go to stderr.
_access_log = os.environ.get("ACCESS_LOG", "")
accesslog = None if _access_log in ("", "0") else ("-" if _access_log == "1" else _access_log)
errorlog = "-"
# Behind a reverse proxy on another host, list its address here (comma-separated).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "batch-dashboard"

if workers > 1 and not os.environ.get("REDIS_URL"):
    print(
        f"batch-dashboard: {workers} workers without REDIS_URL: each process keeps its own cache, so upstream "
        "answers are not shared between them (set REDIS_URL, or WEB_WORKERS=1).",
        file=sys.stderr,
    )
