"""The demo: a realistic SQLite warehouse, the bundled emulator and the example DAGs, end to end."""
