"""Notifications: alarm changes sent to Slack-compatible webhooks, signed JSON webhooks and email,
through an outbox, to destinations a policy allows.

channels.py      the channels: the admin's, and those the NOTIFY_* variables make; their secrets
outbox.py        one delivery per matching channel, written in the alarm change's transaction
messages.py      what a delivery says: its stored payload, and Slack's, the webhook's and email's forms
signing.py       the webhook's signature, and the check a receiver makes
sending.py       one send, over HTTP (through destinations.py) or by email
dispatch.py      sending: due deliveries claimed, sent, their outcomes recorded; each attempt a task
destinations.py  where a send may connect: the destination policy
"""
