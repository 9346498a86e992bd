"""Check the built distributions the way a user gets them.

Usage: ``python scripts/check_dist.py DIST_DIR`` (run by the ``dist`` tox env after
``python -m build``). Checks that the wheel carries the templates, migrations, locale files and
``py.typed``, that the sdist carries the tests and docs, then installs the *wheel* into a fresh
virtualenv and runs ``django check`` and ``migrate`` in a minimal project outside the source
tree.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import textwrap
import venv
import zipfile
from pathlib import Path

WHEEL_MUST_HAVE = [
    "salon_invitations/py.typed",
    "salon_invitations/migrations/0001_initial.py",
    "salon_invitations/templates/salon_invitations/email/invitation_created.html",
    "salon_invitations/templates/salon_invitations/email/invitation_decided.txt",
    "salon_invitations/locale/de/LC_MESSAGES/django.po",
    "salon_invitations/locale/de/LC_MESSAGES/django.mo",
    "salon_invitations/locale/uk/LC_MESSAGES/django.po",
    "salon_invitations/locale/uk/LC_MESSAGES/django.mo",
    "salon_invitations/static/salon_invitations/client.js",
]
WHEEL_MUST_NOT_HAVE = ["tests/", "example_project/"]
SDIST_MUST_HAVE = ["tests/conftest.py", "docs/index.md", "CHANGELOG.md", "LICENSE", "tox.ini"]

SETTINGS = """
SECRET_KEY = "dist-check-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "salon_invitations",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": "db.sqlite3",
    "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
ROOT_URLCONF = "urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""

URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("salon_invitations.urls.seed")),
    path("api/", include("salon_invitations.urls.router")),
]
"""

SMOKE = """
import salon_invitations, pathlib
from django.template.loader import get_template
from django.utils import translation
from django.utils.translation import gettext
assert "site-packages" in pathlib.Path(salon_invitations.__file__).parts, salon_invitations.__file__
get_template("salon_invitations/email/invitation_created.txt")
with translation.override("de"):
    assert gettext("This role is already taken in this salon.") != (
        "This role is already taken in this salon."
    ), "German catalogue not loaded"
print("installed wheel works:", salon_invitations.__version__)
"""


def fail(message: str) -> None:
    print(f"check_dist: {message}", file=sys.stderr)
    sys.exit(1)


def main(dist_dir: str) -> None:
    dist = Path(dist_dir)
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        fail(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
    wheel, sdist = wheels[0], sdists[0]

    names = zipfile.ZipFile(wheel).namelist()
    missing = [name for name in WHEEL_MUST_HAVE if name not in names]
    if missing:
        fail(f"{wheel.name} lacks {missing}")
    stray = [name for name in names if name.startswith(tuple(WHEEL_MUST_NOT_HAVE))]
    if stray:
        fail(f"{wheel.name} should not contain {stray[:5]}")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [name for name in SDIST_MUST_HAVE if name not in members]
    if missing:
        fail(f"{sdist.name} lacks {missing}")
    print(f"check_dist: {wheel.name} ({len(names)} files) and {sdist.name} have what they need")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        venv.create(root / "venv", with_pip=True)
        python = str(root / "venv" / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
        project = root / "project"
        project.mkdir()
        (project / "settings.py").write_text(textwrap.dedent(SETTINGS))
        (project / "urls.py").write_text(textwrap.dedent(URLS))
        env = {"DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(project), "PATH": ""}
        for command in (
            ["-m", "django", "check", "--fail-level", "WARNING"],
            ["-m", "django", "migrate", "--noinput", "-v", "0"],
            ["-m", "django", "makemigrations", "--check", "--dry-run"],
            ["-c", "import django; django.setup()\n" + SMOKE],
        ):
            subprocess.run(
                [python, "-W", "error::DeprecationWarning", *command],
                cwd=project,
                env=env,
                check=True,
            )
    print("check_dist: the wheel installs and works outside the source tree")


if __name__ == "__main__":
    main(sys.argv[1])
