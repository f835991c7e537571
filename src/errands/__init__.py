"""Errands: hand off a programming task, answer the questions that matter, review a stack of commits."""

__version__ = "0.1.0"
