"""Template filters for the catalog's plain text on pages."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# A command or name in backticks, as the catalog's texts write them.
_CODE = re.compile(r"`([^`\n]+)`")


@register.filter
def code_spans(text: str) -> SafeString:
    """``text`` escaped, each backticked span as ``<code>``: the catalog's causes and solutions
    on the help page and in the audit log's explanations."""
    parts = _CODE.split(str(text))  # text, span, text, span, ..., text
    return mark_safe(  # noqa: S308 - every part is escaped here
        "".join(
            format_html("<code>{}</code>", part) if index % 2 else escape(part)
            for index, part in enumerate(parts)
        )
    )
