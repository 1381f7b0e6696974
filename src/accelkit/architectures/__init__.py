"""Model architectures any layer may build: lightweight students and their building blocks."""
