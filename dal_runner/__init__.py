"""dal-runner: config-driven deep active learning with neural architecture search."""

__version__ = "0.1.0"
