"""CLI command groups, one module per area, each exposing ``register(app)``."""

# every command that captures library output (accelkit.quiet) offers the same switch
VERBOSE_HELP = "show libraries' own output (exporter dumps, warnings, loading bars) instead of logging it"
