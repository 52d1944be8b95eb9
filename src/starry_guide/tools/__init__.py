"""Clients of the model and the service: batch scoring, locally or on Dask
(:mod:`~starry_guide.tools.batch`), and replaying station files into a running service
(:mod:`~starry_guide.tools.replay`)."""
