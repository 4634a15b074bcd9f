"""Notification channels, outbox and delivery."""
