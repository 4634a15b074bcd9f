"""Metrics: upstream calls counted in memory and flushed to the database, and `/metrics` in
Prometheus' text format, read from the database at scrape time."""
