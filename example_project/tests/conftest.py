"""End-to-end smoke tests of the example project (``example_project/``).

Run them from the repository root, with pytest-django switched off::

    .venv/bin/pytest example_project/tests -p no:django
    SALON_REQUIRE_SERVICES=1 .venv/bin/pytest example_project/tests -p no:django

They need the ``example`` and ``test`` extras (``pip install -e ".[example,test]"``).

How they work, and why ``-p no:django``
---------------------------------------
Nothing here imports Django. Every test drives the project the way a user does: ``manage.py``
commands and ``python -m daphne configs.asgi:application`` in subprocesses (cwd
``example_project/``), spoken to over HTTP (httpx) and WebSocket (websockets). The repository's
``pyproject.toml`` points pytest-django at the package suite's ``tests.settings``, of no use
here: ``-p no:django`` keeps Django out of the pytest process. It is required, not just tidy:
left on, pytest-django finds ``example_project/manage.py``, puts ``example_project/`` first on
``sys.path``, where ``tests`` is this package, and stops at once with "No module named
'tests.settings'". (The conftest declares pytest-django's ini key ``DJANGO_SETTINGS_MODULE``
when the plugin is off, so pytest does not warn about it.)

Whatever the pytest process has in its environment, each subprocess gets ``configs.settings``
and a clean set of the project's variables (see ``support.project_env``): a ``DATABASE_URL``,
``DEBUG`` or ``SECRET_KEY`` of the calling shell never leaks in (``REDIS_URL`` only gives the
services configuration its Redis host and port).

Every subprocess runs with ``PYTHONWARNINGS=error::DeprecationWarning,
error::PendingDeprecationWarning``, like the package suite: a deprecated call in the project's
stack breaks the test (the server answers 500 and its log is shown).

Configurations
--------------
``embedded``: the project's defaults (in-memory channel layer, eager Celery, console e-mail),
with a fresh SQLite file in a temporary directory as ``DATABASE_URL``. Always runs.

``services`` (marker ``services``): a freshly created PostgreSQL database (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGPASSWORD``; default ``postgres@127.0.0.1:5432``, dropped afterwards)
and an empty Redis database claimed for the run (host and port from ``REDIS_URL``, default
``redis://127.0.0.1:6379``; flushed afterwards). Where ``SALON_REQUIRE_SERVICES=1`` (CI) it runs
and fails loudly when PostgreSQL or Redis does not answer; elsewhere it is skipped
(``-m "not services"`` deselects it).

Browser tests
-------------
Marker ``browser`` (``tox -e browser``; deselected in the ``example`` env): the example project
in a real Chromium driven by Playwright, checked with axe-core. Their fixtures are below
(``live_server``, ``seeded_accounts``, ``browser``, ``new_context``, ``assert_accessible``,
``screenshot``), their helpers and what they need in ``browsers.py``.

Every wait is bounded: subprocesses have timeouts, the server must listen within
``support.SERVER_START_TIMEOUT`` seconds, HTTP requests and WebSocket receives time out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from . import browsers
from .browsers import SEEDED_ACCOUNTS, Account, api_access, unavailable
from .support import (
    Configuration,
    Server,
    manage,
    project_env,
    services_configuration,
    sqlite_url,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

SERVICES_REQUIRED = os.environ.get("SALON_REQUIRE_SERVICES") == "1"


# Pytest configuration -------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "services: needs PostgreSQL and Redis; runs (and is required) where "
        "SALON_REQUIRE_SERVICES=1, skipped elsewhere",
    )
    config.addinivalue_line(
        "markers",
        "browser: drives the example in Chromium (Playwright, axe-core); required where CI or "
        "SALON_REQUIRE_SERVICES=1 is set, skipped elsewhere when Chromium or axe-core is missing",
    )


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.has_plugin("django"):
        # pyproject.toml sets pytest-django's DJANGO_SETTINGS_MODULE for the package suite;
        # known here, pytest does not warn about an unknown option under ``-p no:django``.
        parser.addini("DJANGO_SETTINGS_MODULE", "pytest-django's setting, unused here")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVICES_REQUIRED:
        return  # the services fixture fails loudly when PostgreSQL or Redis is missing
    skip = pytest.mark.skip(
        reason="needs PostgreSQL and Redis: set SALON_REQUIRE_SERVICES=1 to run (and require) "
        "the services configuration"
    )
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


#: Each test's reports by phase ("setup", "call", "teardown"), for fixtures' teardown.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


# Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("services", marks=pytest.mark.services)],
)
def configuration(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Configuration]:
    """The environment of each configuration, on a fresh database."""
    name = request.param
    if name == "embedded":
        directory = tmp_path_factory.mktemp("example-embedded")
        yield Configuration(name, project_env(DATABASE_URL=sqlite_url(directory)))
        return
    with services_configuration(name) as configuration:
        yield configuration


@contextmanager
def served(
    name: str, env: dict[str, str], log_dir: Path, *, seed: bool = False, **options: Any
) -> Iterator[Server]:
    """The example project, migrated (and with ``seed``, ``manage.py seed_demo``'s data) and
    served by daphne (``options``: see ``support.start_server``); afterwards, the server must
    have logged no traceback and no warning."""
    manage("migrate", "--noinput", env=env).ok()
    if seed:
        manage("seed_demo", env=env).ok()
    running = start_server(name, env, log_dir, **options)
    try:
        yield running
    finally:
        running.stop()
    log = running.log()
    problems = [word for word in ("Traceback", "Warning:") if word in log]
    if problems:
        pytest.fail(f"the server logged {problems}:\n{running.log_tail(200)}")


@pytest.fixture(scope="module")
def server(configuration: Configuration, tmp_path_factory) -> Iterator[Server]:
    """The example project, migrated and served by daphne, in each configuration."""
    with served(
        configuration.name, configuration.env, tmp_path_factory.mktemp("daphne")
    ) as running:
        yield running


# Browsers ---------------------------------------------------------------------------------------

#: The live server's rates: its tests share it all session long, and are not about throttling.
UNTHROTTLED = {
    f"THROTTLE_{scope}": "10000/hour"
    for scope in ("ANON", "USER", "AUTH", "REGISTRATION", "INVITE")
}


def _invite_url(port: int) -> dict[str, str]:
    return {"INVITE_URL": f"http://127.0.0.1:{port}/invite/{{token}}"}


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[Server]:
    """The example project for the browser tests: daphne on a fresh SQLite database holding
    ``manage.py seed_demo``'s data (``seeded_accounts``); its invite e-mails link to it."""
    directory = tmp_path_factory.mktemp("example-browser")
    env = project_env(DATABASE_URL=sqlite_url(directory), **UNTHROTTLED)
    with served("browser", env, directory, seed=True, port_env=_invite_url) as running:
        yield running


@pytest.fixture
def live_http(live_server: Server) -> Iterator[httpx.Client]:
    """An HTTP client of the live server's API."""
    with httpx.Client(base_url=live_server.base_url, timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture(scope="session")
def seeded_accounts(live_server: Server) -> dict[str, Account]:
    """The live server's demo accounts by name: ``owner``, ``admin``, ``seller``,
    ``applicant``, ``staff`` (see ``seed_demo``); each one is checked to log in."""
    with httpx.Client(base_url=live_server.base_url, timeout=30, trust_env=False) as client:
        for account in SEEDED_ACCOUNTS.values():
            api_access(client, account)
    return dict(SEEDED_ACCOUNTS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (``browsers.CHROMIUM``), headless, driven by Playwright."""
    if not os.access(browsers.CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {browsers.CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, expect, sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install playwright)")
    expect.set_options(timeout=browsers.ACTION_TIMEOUT)
    playwright = sync_playwright().start()
    try:
        try:
            chromium = playwright.chromium.launch(
                executable_path=browsers.CHROMIUM,
                args=browsers.CHROMIUM_ARGS,
                headless=True,
                timeout=60_000,
            )
        except Error as exc:
            pytest.fail(f"Chromium ({browsers.CHROMIUM}) does not start: {exc}", pytrace=False)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_context(
    browser: Browser, live_server: Server, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], BrowserContext]]:
    """A factory of browser contexts on the live server: ``new_context("owner")``. Each has
    cookies and storage of its own, as one person's browser: one per user. Relative URLs are
    the live server's.

    An uncaught JavaScript error on any page fails the test. When the test fails, each open
    page is saved as a PNG in the test's ``tmp_path`` (the paths are printed)."""
    contexts: list[tuple[str, BrowserContext]] = []
    errors: list[str] = []

    def watch(user: str, page: Page) -> None:
        page.on("pageerror", lambda error: errors.append(f"{user}, {page.url}: {error}"))

    def new(user: str = "visitor") -> BrowserContext:
        context = browser.new_context(
            base_url=live_server.base_url,
            viewport=browsers.VIEWPORT,
            locale="en-US",
            timezone_id="UTC",
            color_scheme="light",
            reduced_motion="reduce",
        )
        context.set_default_timeout(browsers.ACTION_TIMEOUT)
        context.on("page", lambda page: watch(user, page))
        contexts.append((user, context))
        return context

    yield new
    call = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    for index, (user, context) in enumerate(contexts):
        if call is not None and call.failed:
            for number, page in enumerate(context.pages):
                path = tmp_path / f"failed-{index}-{user}-{number}.png"
                try:
                    browsers.save_screenshot(page, path)
                except Exception as exc:  # a crashed page: the test's own failure matters
                    print(f"{user}'s page {page.url}: no screenshot ({exc})")
                else:
                    print(f"{user}'s page {page.url} when the test failed: {path}")
        context.close()
    assert not errors, "uncaught JavaScript errors:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def axe_js() -> str:
    """axe-core's ``axe.min.js`` (``SALON_AXE_JS``)."""
    return browsers.axe_source()


@pytest.fixture
def assert_accessible(axe_js: str) -> Callable[[Page], None]:
    """``assert_accessible(page)``: fail listing every serious or critical violation that
    axe-core finds on the page as it is now (rule id, help, the elements)."""

    def check(page: Page) -> None:
        browsers.assert_accessible(page, axe_js)

    return check


@pytest.fixture(scope="session")
def screenshot(tmp_path_factory) -> Callable[[Page, str], Path]:
    """``screenshot(page, "invite-page.png")``: the whole page as a PNG in
    ``SALON_SCREENSHOT_DIR`` when set (``SALON_SCREENSHOT_DIR=docs/img`` regenerates the
    documentation's images), else in a temporary directory. Returns the file's path."""
    directory = browsers.screenshot_dir() or tmp_path_factory.mktemp("screenshots")

    def take(page: Page, name: str) -> Path:
        return browsers.save_screenshot(page, directory / name)

    return take
