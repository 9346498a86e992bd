"""Hostile request bodies against the example project under daphne: deeply nested JSON and a
body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` answer 400 / 413 in DRF's JSON shape, never a 500 or
an HTML page, on the anonymous endpoints and on the package's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .support import Server, bearer, sign_up

ANONYMOUS = ("api/auth", "api/user/registration")
AUTHENTICATED = ("api/invitation_to_auto_salon", "api/auto_salon")
JSON = {"Content-Type": "application/json"}
#: Django's default DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB), which the project keeps.
LIMIT = 2_621_440
TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def access(server: Server) -> str:
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        return sign_up(client, "bodies@example.com")[1]


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_in_fields(depth: int) -> str:
    value = nested_arrays(depth)
    fields = ("email", "password", "salon", "role", "name")
    return "{" + ", ".join(f'"{name}": {value}' for name in fields) + "}"


def assert_json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.request.url, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    assert isinstance(body["detail"], str), body
    return body


@pytest.mark.parametrize("depth", [500, 100_000])
@pytest.mark.parametrize("shape", [nested_arrays, nested_in_fields])
def test_deeply_nested_json_is_a_400(http: httpx.Client, access: str, depth: int, shape) -> None:
    body = shape(depth)
    for path in ANONYMOUS:
        response = http.post(path, content=body, headers=JSON)
        detail = assert_json_error(response, 400)["detail"]
        assert detail == "JSON parse error - Arrays and objects nest deeper than 64 levels.", path
    for path in AUTHENTICATED:
        response = http.post(path, content=body, headers={**JSON, **bearer(access)})
        assert_json_error(response, 400)


def test_json_within_the_depth_limit_is_read(http: httpx.Client) -> None:
    # Nested, but not too deep: the serializer, not the parser, answers.
    response = http.post("api/auth", content=nested_arrays(64), headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


def ten_megabytes() -> bytes:
    return b'{"email": "' + b"a" * TEN_MB + b'", "password": "x"}'


@pytest.mark.parametrize("path", [*ANONYMOUS, *AUTHENTICATED])
def test_a_body_over_the_limit_is_a_413(http: httpx.Client, access: str, path: str) -> None:
    headers = {**JSON, **bearer(access)} if path in AUTHENTICATED else JSON
    response = http.post(path, content=ten_megabytes(), headers=headers)
    detail = assert_json_error(response, 413)["detail"]
    assert detail == f"Request body too large: the limit is {LIMIT} bytes."


def test_a_chunked_body_over_the_limit_is_a_json_4xx(http: httpx.Client) -> None:
    # Without a Content-Length DRF reads no body at all (its request stream is empty), so the
    # serializer answers; should DRF ever read it, Django's limit applies and the answer is 413.
    def chunks() -> Iterator[bytes]:
        body = ten_megabytes()
        for start in range(0, len(body), 1024 * 1024):
            yield body[start : start + 1024 * 1024]

    response = http.post("api/auth", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code in (400, 413), response.text[:300]
    assert response.headers["content-type"] == "application/json"
    assert response.json() in (
        {"email": ["This field is required."], "password": ["This field is required."]},
        {"detail": f"Request body too large: the limit is {LIMIT} bytes."},
    )


def test_a_body_at_the_limit_is_read(http: httpx.Client) -> None:
    head, tail = b'{"email": "', b'", "password": "x"}'
    body = head + b"a" * (LIMIT - len(head) - len(tail)) + tail
    assert len(body) == LIMIT
    response = http.post("api/auth", content=body, headers=JSON)
    # Read and parsed: there is no such account.
    assert response.status_code == 401, response.text[:300]
    assert response.json() == {"detail": "No active account found with the given credentials"}
