"""Alarms: the rules, their evaluation after each poll cycle (one poller at a time), and the alarms
the pages read and people acknowledge."""
