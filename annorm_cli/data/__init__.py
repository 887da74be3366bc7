"""Package data: the held-out scene photo list."""
