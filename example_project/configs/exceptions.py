"""The API's exception handler: the package's (request bodies refused in DRF's shape), and a
JSON 503 while Redis does not answer.

With ``REDIS_URL`` set the throttles count in Redis (``CACHES``). When it is down or stalls,
each API request gets ``503 {"detail": …, "code": "service_unavailable"}`` with
``Retry-After`` within the cache's one-second timeout, instead of an HTML 500 after redis-py's
default wait. The throttles fail closed: a login throttle that let everything through while
Redis is away would be no throttle. Nothing else in a request needs Redis: the package sends
its events after the commit and never fails a change because the channel layer is down.
"""

import logging
from typing import Any

from redis.exceptions import RedisError
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from salon_invitations.parsers import exception_handler as package_exception_handler

logger = logging.getLogger("configs")

RETRY_AFTER_SECONDS = 5


class ServiceUnavailable(APIException):
    status_code = 503
    default_detail = "The service is briefly unavailable. Try again in a few seconds."
    default_code = "service_unavailable"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RedisError):
        logger.warning("Redis did not answer (%r): 503", exc)
        response = package_exception_handler(ServiceUnavailable(), context)
        if response is not None:
            response.data = {"detail": response.data["detail"], "code": "service_unavailable"}
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return package_exception_handler(exc, context)
