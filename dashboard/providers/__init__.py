"""One module per upstream batch API; each takes an injected httpx.Client and returns `base.Batch`."""
