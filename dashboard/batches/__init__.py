"""Batches: the store of what upstream said (models, store, selectors), the poller that keeps it
fresh, the actions on a batch (services: cancel, results), and what the pages work out from it
(results, charts, ETA, the list's header figures)."""
