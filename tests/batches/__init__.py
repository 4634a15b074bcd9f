"""The store, the poller, the selectors, results, charts and estimates."""
