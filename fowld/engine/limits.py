"""Bounds on what one session accepts, so a hostile or runaway peer cannot exhaust us."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    # forwarded streams open at once in one session (both directions together): room for
    # a thousand at once (a parallel download, a build farm's connections), while a flood
    # stays bounded in descriptors (one per stream on each side) and memory
    max_streams: int = 1024
    # fowl-commands subchannels the peer may hold open at once
    max_control_channels: int = 64
    # listener requests for names we have not declared yet, waiting for a declaration
    max_pending_requests: int = 16
    # how long such a request waits before it is refused
    pending_request_timeout: float = 30.0
    # how long a stream may stay open before its opening message arrives
    stream_open_timeout: float = 30.0
    # bytes a peer may send on a new stream before we accept it (then it is dropped)
    early_data_limit: int = 1 << 20
    # how often per stream (at most) byte counters are reported, in seconds
    bytes_report_interval: float = 0.5
