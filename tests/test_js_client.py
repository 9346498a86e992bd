"""The JavaScript client's unit tests (``tests/js/*.test.mjs``), run with Node's test runner
against the ``client.js`` of the installed package.

Node.js 20 or newer is needed; where ``SALON_REQUIRE_SERVICES`` or ``CI`` is set its absence
fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import salon_invitations

CLIENT_JS = Path(salon_invitations.__file__).parent / "static/salon_invitations/client.js"
TESTS = sorted(str(path) for path in (Path(__file__).parent / "js").glob("*.test.mjs"))


def test_client_js_unit_tests() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("SALON_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail("Node.js (node) is needed for the JavaScript client's tests")
        pytest.skip("Node.js (node) is not installed")
    assert CLIENT_JS.is_file(), f"{CLIENT_JS} is missing from the installed package"
    assert TESTS, "no tests/js/*.test.mjs"
    result = subprocess.run(
        [node, "--test", *TESTS],
        env={**os.environ, "SALON_CLIENT_JS": CLIENT_JS.as_uri()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
