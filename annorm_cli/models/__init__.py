"""Architectures and their config dataclasses (pure torch)."""
from annorm_cli.models.class_conditional import ClassConditionalConfig, Discriminator, Generator

__all__ = ["ClassConditionalConfig", "Generator", "Discriminator"]
