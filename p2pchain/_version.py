"""The package version, in one place (the node reports it in `NodeInfo`)."""

__version__ = "0.1.0"
