"""The views, with the Django test client (and HX-Request for partials)."""
