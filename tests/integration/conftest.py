"""Integration tests run the app as real processes on throwaway PostgreSQL and Redis (tests/services.py)."""

from tests.services import postgres_factory, postgres_server, redis_factory, redis_server

__all__ = ["postgres_factory", "postgres_server", "redis_factory", "redis_server"]
