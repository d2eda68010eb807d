"""Evaluation: classification and retrieval metrics, reports and plots."""
