"""The settings reference (docs/configuration.md) documents exactly the settings that exist.

Every level-3 heading of that page names one setting: a key of ``conf.DEFAULTS`` or one of the
two top-level swappable-model settings. Adding, renaming or removing a setting without the
page following fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from salon_invitations.conf import DEFAULTS, MEMBERSHIP_MODEL_SETTING, SALON_MODEL_SETTING

CONFIGURATION_PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
TOP_LEVEL_SETTINGS = {SALON_MODEL_SETTING, MEMBERSHIP_MODEL_SETTING}

_FENCE = re.compile(r"^(```|~~~)")
_H3 = re.compile(r"^###(?!#)\s+(.*?)\s*#*\s*$")


def documented_settings() -> list[str]:
    """The text of every ``### `` heading outside fenced code blocks, in page order."""
    names = []
    in_fence = False
    for line in CONFIGURATION_PAGE.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.lstrip()):
            in_fence = not in_fence
            continue
        match = None if in_fence else _H3.match(line)
        if match:
            names.append(match.group(1).strip("`"))
    return names


def test_every_setting_is_documented_and_every_documented_setting_exists():
    documented = documented_settings()
    expected = set(DEFAULTS) | TOP_LEVEL_SETTINGS

    missing = sorted(expected - set(documented))
    unknown = sorted(set(documented) - expected)
    assert not (missing or unknown), (
        f"{CONFIGURATION_PAGE.name} is out of date. No '### NAME' heading for: {missing}. "
        f"Headings naming no setting (every level-3 heading there must name one): {unknown}."
    )


def test_each_setting_is_documented_once():
    documented = documented_settings()
    repeated = sorted({name for name in documented if documented.count(name) > 1})
    assert not repeated, f"{CONFIGURATION_PAGE.name} documents these settings twice: {repeated}"
