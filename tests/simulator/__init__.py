"""The embedded simulator, checked with each provider's official SDK over real HTTP."""
