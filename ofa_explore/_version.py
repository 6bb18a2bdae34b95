"""The package's version, in one place: ``ofa_explore.__version__`` and pyproject.toml read it."""

__version__ = "0.1.0"
