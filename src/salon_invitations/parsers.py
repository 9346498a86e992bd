"""JSON for request bodies and WebSocket frames that hostile input cannot turn into a 500.

``json.loads`` recurses once per level of nesting, so a body of a few kilobytes such as
``[[[[…]]]]`` raises ``RecursionError``: an error page instead of a 400, a crashed consumer.
:func:`loads` measures the nesting first, in one pass without recursion, and refuses anything
nested deeper than :data:`MAX_DEPTH` levels of arrays and objects with a ``ValueError``, as it
does any other invalid JSON. :class:`JSONParser` is DRF's parser on top of it: a 400
``{"detail": "JSON parse error - …"}``.

A body larger than Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` never reaches a parser: DRF reads
``request.body`` before calling a JSON or form parser, and Django raises ``RequestDataTooBig``
there, which DRF's default exception handler leaves to Django (an HTML 400 page).
:func:`exception_handler` answers it in DRF's shape instead, 413 ``{"detail": …}``, and
turns Django's ``TooManyFieldsSent`` / ``TooManyFilesSent`` (too many form fields or files)
into a 400 ``{"detail": …}``.

A project puts both in its DRF settings (the form parsers keep the browsable API and Swagger
UI's forms working)::

    REST_FRAMEWORK = {
        "DEFAULT_PARSER_CLASSES": [
            "salon_invitations.parsers.JSONParser",
            "rest_framework.parsers.FormParser",
            "rest_framework.parsers.MultiPartParser",
        ],
        "EXCEPTION_HANDLER": "salon_invitations.parsers.exception_handler",
    }

A project with an exception handler of its own calls this one first and falls back to its own
when it answers ``None``. Another depth limit is a subclass::

    class ShallowJSONParser(JSONParser):
        max_depth = 16
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.utils.translation import gettext as _
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response

__all__ = [
    "MAX_DEPTH",
    "JSONParser",
    "RequestBodyTooLarge",
    "exception_handler",
    "loads",
    "nesting_depth",
]

#: Levels of arrays and objects :func:`loads` accepts by default. The API's own payloads are
#: one or two levels deep; Python's recursion limit (1000 by default, less in worker threads
#: with small stacks) is far away.
MAX_DEPTH = 64

# A JSON string literal, escapes included, or an unterminated one up to the end of the text.
# Every match that starts at a quote succeeds (there is no way for it to fail and be retried
# from the next quote), so removing the strings takes time linear in the text's length even
# for hostile input such as ``"\\"\\"\\"…`` without a closing quote.
_STRING = re.compile(r'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in the JSON document ``text`` (``0`` for a scalar).

    One pass over the text, no recursion; brackets inside strings do not count. The answer
    for invalid JSON is an estimate, good enough to refuse it.
    """
    if "[" not in text and "{" not in text:
        return 0
    without_strings = _STRING.sub("", text) if '"' in text else text
    brackets = _NOT_A_BRACKET.sub("", without_strings)
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def loads(
    data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH, allow_nan: bool = False
) -> Any:
    """Parse the JSON document ``data`` (bytes in UTF-8, -16 or -32, as ``json.loads`` takes).

    Raises ``ValueError`` with a message fit for a client for invalid JSON, for nesting deeper
    than ``max_depth`` levels of arrays and objects, and — unless ``allow_nan`` — for ``NaN``
    and ``Infinity``, which are not JSON.
    """
    if isinstance(data, (bytes, bytearray)):
        text = bytes(data).decode(json.detect_encoding(data))
    else:
        text = data
    # Counting the brackets is cheap and bounds the depth; the exact measure runs only for
    # documents with many of them.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise ValueError(_too_deep(max_depth))
    try:
        return json.loads(text, parse_constant=None if allow_nan else _refuse_constant)
    except RecursionError:  # not expected under the limit; never a 500 all the same
        raise ValueError(_too_deep(max_depth)) from None


def _too_deep(max_depth: int) -> str:
    return _("Arrays and objects nest deeper than %(limit)d levels.") % {"limit": max_depth}


def _refuse_constant(name: str) -> Any:
    raise ValueError(_("%(name)s is not a valid JSON value.") % {"name": name})


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser on :func:`loads`: too deep a document is a 400 like any parse error.

    ``max_depth`` is the deepest nesting accepted (default :data:`MAX_DEPTH`). ``NaN`` and
    ``Infinity`` are refused unless DRF's ``STRICT_JSON`` is off, as with DRF's own parser.
    """

    max_depth: int = MAX_DEPTH

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            # Text encodings only: a bytes-to-bytes codec such as bz2_codec would inflate a
            # small body after Django has checked its size.
            "".encode(encoding)
        except (LookupError, UnicodeError) as exc:
            raise exceptions.ParseError(
                _('Unsupported charset "%(charset)s" in the Content-Type header.')
                % {"charset": encoding}
            ) from exc
        try:
            text = stream.read().decode(encoding)
            return loads(text, max_depth=self.max_depth, allow_nan=not self.strict)
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError included
            raise exceptions.ParseError(_("JSON parse error - %(error)s") % {"error": exc}) from exc


class RequestBodyTooLarge(exceptions.APIException):
    """The request body is larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, detail: Any = None, code: str | None = None):
        if detail is None:
            detail = _("Request body too large: the limit is %(limit)d bytes.") % {
                "limit": settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            }
        super().__init__(detail, code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, with Django's refusals of a request body in DRF's shape.

    ``RequestDataTooBig`` answers 413, ``TooManyFieldsSent`` and ``TooManyFilesSent`` 400,
    each ``{"detail": …}``; everything else is left to DRF's default handler.
    """
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES when it is imported,
    # which may name this module's JSONParser while this module is still being imported.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, RequestDataTooBig):
        exc = RequestBodyTooLarge()
    elif isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        exc = exceptions.ParseError(str(exc))
    return drf_exception_handler(exc, context)
