"""Apache Airflow provider for the Peak (UiPath) Supply Chain & Retail data ingestion API."""

__version__ = "0.1.0"
