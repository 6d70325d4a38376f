"""fowlctl: control fowld, the forwarding daemon, over D-Bus."""
