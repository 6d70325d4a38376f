"""The daemon without D-Bus: profiles, supervised sessions, their manager, and sd_notify."""
