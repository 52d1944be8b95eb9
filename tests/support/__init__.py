"""Real services for the tests: a PostgreSQL server and a headless Chromium."""
