"""Hostile JSON and oversized bodies are a 400 / 413 in DRF's shape, never a 500."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from rest_framework import exceptions
from rest_framework.parsers import FormParser
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from salon_invitations import parsers
from salon_invitations.parsers import MAX_DEPTH, JSONParser, loads, nesting_depth


def arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# loads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"salon": 1, "role": "seller"}', {"salon": 1, "role": "seller"}),
        (b'{"message": "Gr\xc3\xbc\xc3\x9fe"}', {"message": "Grüße"}),
        ('{"message": "Grüße"}'.encode("utf-16"), {"message": "Grüße"}),
        (bytearray(b"[1, 2.5, null, true]"), [1, 2.5, None, True]),
        ('"just a string"', "just a string"),
        ("42", 42),
    ],
)
def test_loads_parses_json(data, expected):
    assert loads(data) == expected


@pytest.mark.parametrize("nest", [arrays, objects])
def test_loads_accepts_the_documented_depth(nest):
    assert MAX_DEPTH == 64
    assert nesting_depth(nest(MAX_DEPTH)) == MAX_DEPTH
    assert loads(nest(MAX_DEPTH)) == json.loads(nest(MAX_DEPTH))


@pytest.mark.parametrize("nest", [arrays, objects])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 100_000])
def test_loads_refuses_deeper_nesting_with_a_value_error(nest, depth):
    with pytest.raises(ValueError, match="nest deeper than 64 levels"):
        loads(nest(depth))


def test_loads_refuses_deep_nesting_inside_a_value():
    body = '{"salon": 1, "role": ' + arrays(500) + "}"
    with pytest.raises(ValueError, match="deeper than 64"):
        loads(body.encode())


def test_loads_takes_another_limit():
    assert loads(arrays(3), max_depth=3) == [[[]]]
    with pytest.raises(ValueError, match="deeper than 2 levels"):
        loads(arrays(3), max_depth=2)


def test_a_recursion_error_beyond_a_raised_limit_is_still_a_value_error():
    # A limit far above Python's recursion limit: json's own RecursionError surfaces, as a
    # ValueError all the same.
    with pytest.raises(ValueError, match="deeper than 1000000 levels"):
        loads(arrays(100_000), max_depth=1_000_000)


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"message": "[" * 1000 + '\\"{{{' + "}" * 10, "role": "seller"})
    assert nesting_depth(text) == 1
    assert loads(text)["role"] == "seller"


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ('"[["', 0), ("[]", 1), ('[{"a": [1]}, []]', 3), ('{"a": "]]]", "b": [[]]}', 3)],
)
def test_nesting_depth(text, depth):
    assert nesting_depth(text) == depth


@pytest.mark.parametrize(
    "data", ["", "[1,", "{'single': 'quotes'}", '"unterminated', b"\xc3(", "[1] [2]"]
)
def test_loads_refuses_invalid_json_with_a_value_error(data):
    with pytest.raises(ValueError):
        loads(data)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_loads_refuses_nan_and_infinity_unless_allowed(constant):
    with pytest.raises(ValueError, match=f"{constant} is not a valid JSON value"):
        loads(f"[{constant}]")
    assert len(loads(f"[{constant}]", allow_nan=True)) == 1


# JSONParser ----------------------------------------------------------------------------------


class EchoView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [JSONParser, FormParser]

    def post(self, request):
        return Response({"data": request.data})


class EchoWithHandlerView(EchoView):
    def get_exception_handler(self):
        return parsers.exception_handler


factory = APIRequestFactory()


def post(view, body, content_type="application/json", **extra):
    request = factory.post("/echo", body, content_type=content_type, **extra)
    return view.as_view()(request)


def test_parser_passes_json_through():
    response = post(EchoView, json.dumps({"salon": 1, "role": "seller"}))
    assert response.status_code == 200
    assert response.data == {"data": {"salon": 1, "role": "seller"}}


@pytest.mark.parametrize("body", [arrays(500), arrays(100_000), objects(5_000)])
def test_parser_answers_400_to_deep_nesting(body):
    response = post(EchoView, body)
    assert response.status_code == 400
    assert response.data == {
        "detail": "JSON parse error - Arrays and objects nest deeper than 64 levels."
    }
    assert response.data["detail"].code == "parse_error"


def test_parser_answers_400_to_invalid_json():
    response = post(EchoView, '{"salon": ')
    assert response.status_code == 400
    assert response.data["detail"].startswith("JSON parse error - Expecting value")


def test_parser_decodes_with_the_declared_charset():
    body = json.dumps({"message": "Grüße"}, ensure_ascii=False).encode("latin-1")
    response = post(EchoView, body, content_type="application/json; charset=latin-1")
    assert response.data == {"data": {"message": "Grüße"}}


def test_parser_answers_400_to_a_body_not_in_its_charset():
    response = post(EchoView, b'{"message": "\xff"}')
    assert response.status_code == 400
    assert response.data["detail"].startswith("JSON parse error - 'utf-8' codec")


def test_parser_refuses_a_compressing_charset():
    response = post(EchoView, b"[]", content_type="application/json; charset=bz2_codec")
    assert response.status_code == 400
    assert response.data == {
        "detail": 'Unsupported charset "bz2_codec" in the Content-Type header.'
    }


def test_parser_follows_strict_json():
    assert post(EchoView, "[NaN]").status_code == 400

    class LaxParser(JSONParser):
        strict = False

    stream = io.BytesIO(b"[NaN]")
    assert len(LaxParser().parse(stream, "application/json", {})) == 1


def test_parser_depth_is_a_class_attribute():
    class ShallowParser(JSONParser):
        max_depth = 2

    with pytest.raises(exceptions.ParseError, match="deeper than 2 levels"):
        ShallowParser().parse(io.BytesIO(arrays(3).encode()), "application/json", {})


# exception_handler ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_not_handled_by_drf_alone(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    with pytest.raises(RequestDataTooBig):
        post(EchoView, json.dumps({"message": "x" * 200}))


def test_a_body_over_the_limit_answers_413(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post(EchoWithHandlerView, json.dumps({"message": "x" * 200}))
    assert response.status_code == 413
    assert response.data == {"detail": "Request body too large: the limit is 100 bytes."}
    assert response.data["detail"].code == "request_too_large"
    # A body within the limit still goes through.
    assert post(EchoWithHandlerView, json.dumps({"message": "x"})).status_code == 200


def test_a_body_over_the_limit_answers_413_in_the_browsable_api(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post(EchoWithHandlerView, json.dumps({"m": "x" * 200}), HTTP_ACCEPT="text/html")
    assert response.status_code == 413
    response.render()
    assert b"Request body too large" in response.content


def test_too_many_form_fields_answer_400(settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2
    body = "a=1&b=2&c=3"
    content_type = "application/x-www-form-urlencoded"
    with pytest.raises(TooManyFieldsSent):
        post(EchoView, body, content_type=content_type)
    response = post(EchoWithHandlerView, body, content_type=content_type)
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.data["detail"]


def test_other_errors_are_left_to_drf():
    class Missing(EchoWithHandlerView):
        def post(self, request):
            raise exceptions.NotFound()

    response = Missing.as_view()(factory.post("/echo", {}, format="json"))
    assert response.status_code == 404
    assert response.data == {"detail": "Not found."}


@pytest.mark.parametrize(
    "tail",
    ['"' + '\\"' * 200_000, '"' + '\\"' * 200_000 + "\\", '"a\\' * 140_000, '"' * 400_000],
    ids=["escaped-quotes", "escaped-quotes-and-backslash", "backslashes", "quotes"],
)
def test_measuring_the_nesting_takes_linear_time_on_hostile_strings(tail):
    # A string that never closes once made the measure rescan the text from every quote:
    # seconds for 64 KB, minutes for these 400 KB, hours for a body under Django's 2.5 MB
    # limit. Linear, it takes milliseconds (the bound leaves room for a loaded machine).
    text = "[" * 65 + tail
    started = time.perf_counter()
    with pytest.raises(ValueError):
        loads(text)
    assert time.perf_counter() - started < 2.0
