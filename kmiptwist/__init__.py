"""kmiptwist: a KMIP key server on Twisted."""

__version__ = "0.1.0.dev0"
