"""Bulk cancel."""
