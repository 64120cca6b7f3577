"""A hostname per process for Airflow's ``[core] hostname_callable``, so each test worker is identifiable.

Two Celery workers on one machine share its hostname, and ``task_instance.hostname`` would not tell which
one ran a task. A worker started with ``AIRFLOW__CORE__HOSTNAME_CALLABLE=tests.worker_name.hostname`` (the
repository root on its ``PYTHONPATH``) reports ``$PEAK_TEST_WORKER_NAME`` instead, as would its task processes,
which inherit its environment.
"""

from __future__ import annotations

import os

#: The environment variable holding the name.
ENV = "PEAK_TEST_WORKER_NAME"
#: The import path to give ``[core] hostname_callable``.
CALLABLE = f"{__name__}.hostname"


def hostname() -> str:
    """This process's worker name."""
    return os.environ[ENV]
