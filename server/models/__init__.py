"""Hosted models: the repository (one folder per model), models and committees, feeds."""
