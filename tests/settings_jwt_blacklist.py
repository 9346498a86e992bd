"""The test settings plus simplejwt's token blacklist app (with its migrations).

Used only by ``tests/jwt_blacklist_case.py``, which ``tests/test_consumer.py`` runs in a child
pytest: the blacklist's models are concrete only when the app is installed at import time, so
they cannot be switched on with ``override_settings`` in the main run. The base settings are
``SALON_TEST_BASE_SETTINGS`` (``tests.settings`` or ``tests.settings_swapped``).
"""

import importlib
import os

_base = importlib.import_module(os.environ.get("SALON_TEST_BASE_SETTINGS", "tests.settings"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

INSTALLED_APPS = [*_base.INSTALLED_APPS, "rest_framework_simplejwt.token_blacklist"]
