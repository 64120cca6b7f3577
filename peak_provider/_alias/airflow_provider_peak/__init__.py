"""``airflow_provider_peak``: the module name Airflow derives from this distribution's name.

Airflow 3's example-DAG discovery imports ``airflow-provider-peak`` as ``airflow_provider_peak`` and
looks for an ``example_dags`` folder beside it; there is none, so it adds no DAGs. The provider's code
is the ``peak_provider`` package; import from there. (Installed from ``peak_provider/_alias`` through
setuptools' package-dir mapping, see ``pyproject.toml``.)
"""

from peak_provider import __version__

__all__ = ["__version__"]
