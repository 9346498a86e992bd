"""Celery: Redis as broker and result backend when ``REDIS_URL`` is set, eager tasks otherwise.

Without Redis every task runs in the calling process as it is called (``task_always_eager``),
so the project works with nothing but Python; with Redis, start a worker with the beat
scheduler from ``example_project/``::

    celery -A configs worker -B -l info

The beat schedule itself is in ``configs/celery.py``; ``django_celery_beat`` stores it in the
database, where it can be edited in the admin.
"""

from configs.extra_conf import REDIS_URL, env_str

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 60 * 60 * 24
CELERY_TIMEZONE = env_str("TIME_ZONE", "UTC")

CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True

CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
