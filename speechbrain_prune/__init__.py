"""Structured pruning of SpeechBrain CRDNN speech recognisers."""

__version__ = "0.1.0"
