"""Metrics, leaderboards, entropy, plots, reports."""
