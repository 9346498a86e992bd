"""A logging filter that keeps invite tokens out of logs.

An invite's token travels in URL paths (``…/invite/<token>``, the accept page
``/invite/<token>``), and servers and Django log paths: access lines, ``Not Found: …``,
``Forbidden: …``. Add the filter to the handlers that write those records::

    LOGGING = {
        "version": 1,
        "filters": {
            "redact_invite_tokens": {"()": "salon_invitations.log_filters.RedactInviteTokens"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "filters": ["redact_invite_tokens"]},
        },
        "loggers": {
            "django": {"handlers": ["console"], "level": "INFO"},
            "django.channels.server": {"handlers": ["console"], "level": "INFO"},
        },
    }
"""

from __future__ import annotations

import logging
import re


class RedactInviteTokens(logging.Filter):
    """Replaces the token after ``/invite/`` in a record's message with ``[redacted]``."""

    pattern = re.compile(r"(/invite/)[A-Za-z0-9_-]{8,}")
    replacement = r"\1[redacted]"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.pattern.sub(self.replacement, message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
