"""Static files with DEBUG off, run as the README's "Production-style run" says: ``collectstatic``
into STATIC_ROOT, then daphne, WhiteNoise serving the files under their hashed names.

One server for the checks of a collected STATIC_ROOT, plain HTTP (``SECURE_SSL_REDIRECT=0``);
a second one, started without ``collectstatic``, shows how that mistake fails.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .support import Server, manage, project_env, sqlite_url, start_server

#: A year, in seconds: browsers may keep a hashed name at least this long.
A_YEAR = 365 * 24 * 60 * 60
#: The package's own script, shipped in its static files.
CLIENT_JS = "salon_invitations/client.js"
JS_TYPES = {"text/javascript", "application/javascript"}
ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


def production_env(directory: Path, static_root: Path) -> dict[str, str]:
    return project_env(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=sqlite_url(directory),
        STATIC_ROOT=str(static_root),
    )


@pytest.fixture(scope="module")
def directory(tmp_path_factory) -> Path:
    """Where the servers' database lives, migrated with DEBUG off."""
    directory = tmp_path_factory.mktemp("example-static")
    manage("migrate", "--noinput", env=production_env(directory, directory / "unused")).ok()
    return directory


@pytest.fixture(scope="module")
def static_root(directory: Path) -> Path:
    static_root = directory / "static"
    manage("collectstatic", "--noinput", env=production_env(directory, static_root)).ok()
    return static_root


@pytest.fixture(scope="module")
def manifest(static_root: Path) -> dict[str, str]:
    """``collectstatic``'s map of names to hashed names."""
    return json.loads((static_root / "staticfiles.json").read_text())["paths"]


@contextmanager
def served(name: str, directory: Path, static_root: Path, log_dir: Path) -> Iterator[Server]:
    running = start_server(name, production_env(directory, static_root), log_dir)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(directory: Path, static_root: Path, tmp_path_factory) -> Iterator[Server]:
    with served("static", directory, static_root, tmp_path_factory.mktemp("daphne")) as running:
        yield running


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy set in the environment must not see loopback requests.
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        yield client


def max_age(response: httpx.Response) -> int:
    found = re.search(r"max-age=(\d+)", response.headers.get("Cache-Control", ""))
    assert found, response.headers
    return int(found.group(1))


def media_type(response: httpx.Response) -> str:
    return response.headers["Content-Type"].split(";")[0].strip()


def assert_hashed_file(
    http: httpx.Client, url: str, static_root: Path, manifest: dict[str, str], media: set[str]
) -> httpx.Response:
    """``url`` names a collected file under its hashed name, served whole, of a type in
    ``media``, cacheable for a year at least."""
    name = url.removeprefix("/static/")
    assert name in manifest.values(), f"{url} is not a hashed name"
    response = http.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert media_type(response) in media, (url, response.headers)
    assert max_age(response) >= A_YEAR, (url, response.headers)
    assert "immutable" in response.headers["Cache-Control"], (url, response.headers)
    assert response.content == (static_root / name).read_bytes(), url
    return response


def test_the_admin_pages_link_their_css_under_its_hashed_name(
    http: httpx.Client, static_root: Path, manifest: dict[str, str]
) -> None:
    page = http.get("admin/login/")
    assert page.status_code == 200, page.text
    hashed = f"/static/{manifest['admin/css/base.css']}"
    assert hashed != "/static/admin/css/base.css"
    assert f'href="{hashed}"' in page.text
    assert_hashed_file(http, hashed, static_root, manifest, {"text/css"})


def test_swagger_ui_assets_are_served_from_the_project(
    http: httpx.Client, static_root: Path, manifest: dict[str, str]
) -> None:
    page = http.get("api/doc")
    assert page.status_code == 200, page.text
    assets = ASSET.findall(page.text)
    names = {url.rsplit("/", 1)[-1].split(".")[0] for url in assets}
    assert {"swagger-ui", "swagger-ui-bundle", "swagger-ui-standalone-preset"} <= names, assets
    for url in assets:
        media = JS_TYPES if url.endswith(".js") else {"text/css", "image/png"}
        assert_hashed_file(http, url, static_root, manifest, media)


def test_the_package_client_script(
    http: httpx.Client, static_root: Path, manifest: dict[str, str]
) -> None:
    assert CLIENT_JS in manifest
    assert_hashed_file(http, f"/static/{manifest[CLIENT_JS]}", static_root, manifest, JS_TYPES)


def test_large_files_are_sent_compressed(http: httpx.Client, manifest: dict[str, str]) -> None:
    url = f"/static/{manifest['drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js']}"
    response = http.get(url, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) < len(response.content) / 2


def test_names_without_a_hash_are_cached_briefly(http: httpx.Client) -> None:
    """A new release changes their content under the same name."""
    for name, media in (("admin/css/base.css", {"text/css"}), (CLIENT_JS, JS_TYPES)):
        response = http.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert media_type(response) in media, (name, response.headers)
        assert max_age(response) < 60 * 60, (name, response.headers)
        assert "immutable" not in response.headers["Cache-Control"]


def test_the_server_logged_no_error(server: Server, http: httpx.Client) -> None:
    http.get("api/doc")
    log = server.log()
    assert "Traceback" not in log, server.log_tail(200)
    assert "Warning:" not in log, server.log_tail(200)


def test_without_collectstatic_pages_fail_naming_the_missing_file(
    directory: Path, tmp_path_factory
) -> None:
    empty = directory / "not-collected"
    with (
        served("not-collected", directory, empty, tmp_path_factory.mktemp("daphne")) as server,
        httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as http,
    ):
        assert http.get("admin/login/").status_code == 500
        assert http.get("/static/admin/css/base.css").status_code == 404
    log = server.log()
    assert f"No directory at: {empty}" in log, log
    assert "Missing staticfiles manifest entry for 'admin/css/base.css'" in log, log
