"""Errands: hand off a programming task, answer the questions that matter, review the commits."""

__version__ = "0.1.0"
