"""fowld: forward TCP and UNIX streams between two computers over Magic Wormhole Dilation."""

__version__ = "0.1.0"
