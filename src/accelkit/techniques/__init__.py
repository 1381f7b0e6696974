"""Acceleration techniques, one module each: a config dataclass and a function that applies it."""
