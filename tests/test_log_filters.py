"""Invite tokens never reach a log handler that uses the filter."""

from __future__ import annotations

import io
import logging

from salon_invitations import tokens
from salon_invitations.log_filters import RedactInviteTokens


def test_tokens_in_paths_are_redacted_whatever_the_formatting():
    token, _digest = tokens.new_token()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactInviteTokens())
    logger = logging.getLogger("tests.log_filters")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("Forbidden: %s", f"/api/invitation_to_auto_salon/invite/{token}/accept")
        logger.warning(f'"GET /invite/{token} HTTP/1.1" 200')
        logger.warning("Not Found: /api/salons/12")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert token not in output
    assert output.count("/invite/[redacted]") == 2
    assert "Not Found: /api/salons/12" in output
