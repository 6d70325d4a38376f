"""The D-Bus adapter: the daemon's manager and sessions as objects on the session bus."""
