"""The web: every view (pages and their htmx partials), the middleware, and sign-in (the cached
permissions backend, the client address for throttling)."""
