"""Management REST API for operators (/api/v1), on its own listener."""
