"""Bulk cancel: a preview of the filters' cancelable batches, its confirmation (once), and the
operation's items canceled one at a time, resumed by the poller when a process dies."""
