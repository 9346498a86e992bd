"""The test settings with both swappable models replaced by the test app's own."""

from tests.settings import *  # noqa: F403

SALON_INVITATIONS_SALON_MODEL = "testapp.CustomSalon"
SALON_INVITATIONS_MEMBERSHIP_MODEL = "testapp.CustomMembership"

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
