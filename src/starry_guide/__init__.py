"""Starry Guide."""
