"""The ``triage`` console script."""
