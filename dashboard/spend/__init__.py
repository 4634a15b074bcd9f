"""Spend: what batches cost, from their stored tokens and a price table (issue 21).

prices.py is pure (the table, model matching, cost in Decimal); table.py reads it once per process
with the override file named by settings.PRICES_FILE.
"""
