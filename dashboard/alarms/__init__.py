"""Alarms: rules.py the rules (pure), evaluation.py their evaluation after each poll cycle (one poller
at a time), selectors.py what the pages read, services.py acknowledging."""
