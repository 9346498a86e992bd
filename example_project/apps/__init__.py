"""The example project's own apps."""
