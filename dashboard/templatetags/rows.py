from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from ..batches.selectors import StoredView
from ..web import rows

register = template.Library()


@register.simple_tag(takes_context=True)
def batch_row(context, view: StoredView | None) -> SafeString:
    """A batch's row (web/rows.py) as this page shows it: the context says where the viewer may cancel."""
    return rows.row_html(view, context)
