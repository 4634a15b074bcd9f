"""Metrics: upstream calls counted in memory and flushed to the database, and `/metrics` in
Prometheus' text format, read from the database at scrape time.

call_counter.py  this process's upstream calls, counted and added to the database (the providers' recorder)
collectors.py    what a scrape reports, from a few aggregate queries
access.py        who may read it (token, addresses, staff); metrics are off unless one is configured
views.py         /metrics
"""
