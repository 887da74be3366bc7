"""uvicorn's HTTP/1.1 protocol with a deadline for a request's headers: uvicorn closes idle
keep-alive connections, but a connection that sends part of a request line or header and then
stalls (slowloris) is otherwise held open for ever. Here such a connection is closed once
HEADER_TIMEOUT_S pass without a complete request head; a request whose head has arrived (its
body may stream slowly, up to the body limit) is not affected."""
from __future__ import annotations

from typing import Optional

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0        # from a connection's first byte (or the end of its last response) to a complete head
KEEP_ALIVE_S = 5               # an idle keep-alive connection is closed after this (uvicorn's own timer)


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: Optional[object] = None
        self._arm()

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_head():
            self._arm()
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()

    def _expired(self) -> None:
        self._header_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
