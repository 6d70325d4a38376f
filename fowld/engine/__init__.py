"""The forwarding engine: sessions, services, clients and streams over a Dilated wormhole."""
