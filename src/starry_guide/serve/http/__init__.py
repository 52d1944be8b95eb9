"""HTTP hardening: the request guard (limits, rate), the drained protocol, safe error bodies."""
