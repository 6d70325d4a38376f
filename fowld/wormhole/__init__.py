"""Everything that touches magic-wormhole's internals, in one place."""
