"""Helpers of the browser tests (marker ``browser``): Chromium, axe-core, the keyboard.

The fixtures that use them are in ``conftest.py``. Nothing here imports Django, and Playwright
is imported only where a browser is started, so that the other smoke tests run without it.

What the browser tests need, and where it comes from:

- Chromium: Debian's ``chromium`` package, ``/usr/bin/chromium`` (``SALON_CHROMIUM`` names
  another binary). Playwright drives it; its own browser downloads are never used.
- Playwright for Python (``pip install playwright``; the ``browser`` tox env installs it).
- axe-core: the file ``axe.min.js`` from npm's ``axe-core``, named by ``SALON_AXE_JS`` (the
  ``browser`` tox env installs it and sets the variable).

Where ``CI`` or ``SALON_REQUIRE_SERVICES=1`` is set, a missing one fails the tests; elsewhere
they are skipped, saying what is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path(os.environ.get("SALON_CHROMIUM") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    # The tests run as root in CI, where Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    # Nothing but the loopback server is reachable: no QUIC probes, no updates, no sync, no
    # first-run pages, no requests of Chromium's own.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Every page is this size (screenshots in docs/img/ included); full-page screenshots grow.
VIEWPORT = {"width": 960, "height": 720}
#: Milliseconds a Playwright action or expectation may wait.
ACTION_TIMEOUT = 10_000

#: axe-core's impacts that fail :func:`assert_accessible`.
FAILING_IMPACTS = frozenset({"serious", "critical"})


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}


#: In CI a browser test that cannot run fails; elsewhere it is skipped.
BROWSERS_REQUIRED = _flag("CI") or os.environ.get("SALON_REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) a browser test that lacks ``what``."""
    if BROWSERS_REQUIRED:
        pytest.fail(f"the browser tests are required here (CI is set) but {what}", pytrace=False)
    pytest.skip(f"browser test: {what}")


def expect(actual: Page | Locator) -> Any:
    """Playwright's ``expect``, imported when first used: collecting a browser test module
    needs no Playwright (the ``example`` env has none)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(actual)


# Accounts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    email: str
    password: str


#: ``manage.py seed_demo``'s password and accounts (apps/auto_salon/management/commands/);
#: the ``seeded_accounts`` fixture checks that each one logs in.
DEMO_PASSWORD = "demo-pass-123"
SEEDED_ACCOUNTS = {
    name: Account(f"{name}@example.com", DEMO_PASSWORD)
    for name in ("owner", "admin", "seller", "applicant", "staff")
}


def api_access(http: httpx.Client, account: Account) -> str:
    """An access token of ``account`` from ``POST api/auth``."""
    response = http.post("api/auth", json={"email": account.email, "password": account.password})
    assert response.status_code == 200, f"{account.email} cannot log in: {response.text}"
    return response.json()["access"]


# axe-core ---------------------------------------------------------------------------------------


def axe_source() -> str:
    """The text of ``axe.min.js`` named by ``SALON_AXE_JS``."""
    path = os.environ.get("SALON_AXE_JS")
    if not path:
        unavailable(
            "SALON_AXE_JS is not set: run `npm install --prefix /tmp/axe axe-core@4` and set "
            "SALON_AXE_JS=/tmp/axe/node_modules/axe-core/axe.min.js (tox -e browser does both)"
        )
    if not Path(path).is_file():
        unavailable(f"SALON_AXE_JS={path} is no file (npm install axe-core@4)")
    return Path(path).read_text(encoding="utf-8")


def axe_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """axe-core's violations on ``page`` (the rules of every standard, WCAG 2.2 AA included),
    whatever their impact."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=source)
    result = page.evaluate("async () => await window.axe.run(document)")
    return result["violations"]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation['impact']}): {violation['help']}\n"
            f"  {violation['helpUrl']}"
        )
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            lines.append(f"    at {target}: {node['html'][:200]}")
    return "\n".join(lines)


def assert_accessible(page: Page, source: str) -> None:
    """Fail listing every serious or critical axe-core violation on ``page`` as shown now."""
    failing = [v for v in axe_violations(page, source) if v["impact"] in FAILING_IMPACTS]
    assert not failing, (
        f"axe-core finds {len(failing)} serious or critical violation(s) on {page.url}:\n"
        + describe_violations(failing)
    )


# Screenshots ------------------------------------------------------------------------------------


def screenshot_dir() -> Path | None:
    """``SALON_SCREENSHOT_DIR`` (created), where screenshots go when it is set: docs/img/ to
    regenerate the documentation's images."""
    path = os.environ.get("SALON_SCREENSHOT_DIR")
    if not path:
        return None
    directory = Path(path).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_screenshot(page: Page, path: Path) -> Path:
    page.screenshot(path=path, full_page=True, animations="disabled", caret="hide")
    return path


# The keyboard -----------------------------------------------------------------------------------

#: What identifies the focused element: its id, else its name and value (buttons), else tag.
_FOCUSED = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    if (el.id) return '#' + el.id;
    const tag = el.tagName.toLowerCase();
    const name = el.getAttribute('name');
    const value = el.getAttribute('value');
    if (!name) return tag;
    return `${tag}[name=${name}]` + (value ? `[value=${value}]` : '');
}"""

#: Is the focus indicator of the focused element shown (``:focus-visible`` with an outline or
#: a box shadow)?
_FOCUS_SHOWN = """() => {
    const el = document.activeElement;
    if (!el || !el.matches(':focus-visible')) return false;
    const style = getComputedStyle(el);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
    return outline || style.boxShadow !== 'none';
}"""


def focus_visible(page: Page) -> bool:
    """Does the focused element show a focus indicator?"""
    return bool(page.evaluate(_FOCUS_SHOWN))


def focused(page: Page) -> str | None:
    """The focused element as ``#id`` or ``tag[name=…][value=…]``; ``None`` for the page."""
    return page.evaluate(_FOCUSED)


def tab_to(page: Page, target: str, *, limit: int = 40) -> list[str]:
    """Press Tab until the element ``target`` (as :func:`focused` names it) has the focus; the
    focus must be visible on every element on the way. Returns the elements passed, ``target``
    last."""
    passed: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if now is None:
            continue
        assert page.evaluate(_FOCUS_SHOWN), f"no visible focus indicator on {now}"
        passed.append(now)
        if now == target:
            return passed
    pytest.fail(f"{target} not reached with Tab ({limit} presses); the focus went {passed}")
