"""The API routers; each imports dependencies, schemas and the service, never the app."""
