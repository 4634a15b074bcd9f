"""Notifications: alarm changes sent to Slack-compatible webhooks, signed JSON webhooks and email,
through an outbox, to destinations a policy allows."""
