"""Dagster definitions for sidflow."""
