"""Benchmarks of airflow-provider-peak against the bundled emulator and a real PostgreSQL (``run.py``)."""
