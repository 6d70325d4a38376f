"""A mailbox squatter: claims nameplates of our app id and holds them, sending nothing.

``python -m harness.squatter MAILBOX_URL NAMEPLATE...`` binds with a side of its
own, claims each nameplate and stays connected until killed, as a third party
who read the nameplates from the mailbox's list would. It prints "claimed N"
for each claim the mailbox confirms.
"""

from __future__ import annotations

import json
import os
import sys

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor

from fowld.engine.config import APP_ID


class Squatter(WebSocketClientProtocol):
    nameplates: list[str] = []

    def onOpen(self) -> None:
        self._send(type="bind", appid=APP_ID, side=os.urandom(5).hex())
        for nameplate in self.nameplates:
            self._send(type="claim", nameplate=nameplate)

    def _send(self, **message: str) -> None:
        message["id"] = os.urandom(2).hex()
        self.sendMessage(json.dumps(message).encode("utf-8"))

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        message = json.loads(payload)
        if message.get("type") == "claimed":
            print(f"claimed {message.get('mailbox')}", flush=True)
        elif message.get("type") == "error":
            print(f"error {message.get('error')}", flush=True)

    def onClose(self, was_clean: bool, code: int, reason: str) -> None:
        if reactor.running:
            reactor.stop()


def main(url: str, nameplates: list[str]) -> None:
    Squatter.nameplates = nameplates
    factory = WebSocketClientFactory(url)
    factory.protocol = Squatter
    connectWS(factory)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
