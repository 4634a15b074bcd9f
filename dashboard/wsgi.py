import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application = get_wsgi_application()

# gunicorn runs no system check: a price file that cannot be read (PRICES_FILE) stops the web process at
# start, as it stops manage.py's commands (the poller), rather than failing the pages that price batches.
from dashboard.spend.table import check_price_table  # noqa: E402

if problems := check_price_table():
    raise ImproperlyConfigured("; ".join(problem.msg for problem in problems))
