"""The example project's configuration package.

The Celery app is loaded with Django so that ``@shared_task`` functions (the package's
``salon_invitations.tasks``) bind to it, whichever process imports them first.
"""

from configs.celery import app as celery_app

__all__ = ("celery_app",)
