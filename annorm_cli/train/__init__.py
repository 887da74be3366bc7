"""Trainers: shared machinery in common.py, one module per task."""
