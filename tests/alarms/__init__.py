"""Alarm rules and their evaluation."""
