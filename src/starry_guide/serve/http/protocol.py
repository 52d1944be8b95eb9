"""uvicorn's httptools protocol with a deadline and a size limit on request headers.

uvicorn closes a connection that stays idle between requests (``timeout_keep_alive``) but has
no deadline for the headers themselves: its keep-alive timer stops at the first byte, so a
client sending a header line every few seconds ("slowloris") holds a connection for ever,
and httptools sets no limit on their size. This protocol answers **408** when a request's
headers are not complete ``header_timeout_s`` after the connection opened (or the previous
response ended), and **431** when the request line and headers pass ``max_header_bytes``;
both close the connection. The body has its own deadline in
:class:`~starry_guide.serve.http.guard.RequestGuard`.

It also **drains** instead of dropping when the worker stops (SIGTERM, a SIGHUP restart of
the workers, a reload): uvicorn closes every connection with no request under way at once,
so a request whose connection the worker had just accepted — or a keep-alive client's next
request already on the wire — met a closed socket ("connection reset by peer"). Here such a
connection gets ``DRAIN_S`` for its request, which is answered with ``connection: close``;
a connection still silent after that — or still sending its headers, like a slow client — is
closed.

It also sends a response's **head and body in one write**: uvicorn writes the status line
and headers, then the body, with two ``transport.write`` calls — two ``send()`` system calls
on the event loop (py-spy on ``POST /v1/nowcast`` at 10 clients: 12 % of the server's GIL
time in uvicorn's ``send``). :class:`CoalescingTransport` holds the head until the body
follows (measured on a bare endpoint at 10 clients: 0.138 → 0.103 ms of CPU a request).

``starry serve`` passes this class to uvicorn as ``http=``; the limits come from the
environment variable ``STARRY_SERVE_SETTINGS`` (set by ``starry serve`` for its workers) or
the defaults.
"""

from __future__ import annotations

import asyncio
import functools
import http

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from starry_guide.config import ServeSettings

#: request line plus headers (uvicorn's h11 protocol allows 16 KiB by default)
MAX_HEADER_BYTES = 64 * 1024
#: a stopping worker waits this long for a request on a connection with none under way
DRAIN_S = 1.0


@functools.cache
def _limits() -> ServeSettings:
    from starry_guide.serve.process import settings_from_environment

    return settings_from_environment()


class _Refused(Exception):
    pass


class CoalescingTransport:
    """A connection's transport that sends a response's head with what follows it.

    A write is held back; the next write joins it and both are handed to the real
    transport at once — so a response whose head and body are written one after the other,
    as every non-streamed one is, costs one system call instead of two, without waiting. A
    write that nothing follows (a streamed response's head or last chunk) goes out at the
    end of the event loop's turn (``loop.call_soon``), or before the transport is closed.
    Every other attribute is delegated to the real transport (see ``__getattr__``)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held = None
        if not self._transport.is_closing():
            self._transport.write(held + data)

    def flush(self) -> None:
        """Hand a held write to the transport (nothing once it is closing: the peer has
        gone, or it was aborted)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str):
        # Everything this class does not define is the real transport's: uvicorn's protocol
        # and request cycles call get_extra_info, pause_reading/resume_reading,
        # set_write_buffer_limits, get_write_buffer_size and abort on it. abort() drops a held
        # write on purpose (an aborted connection sends nothing more); only write, close and
        # is_closing need to know about the held bytes, hence are defined above.
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`uvicorn.protocols.http.httptools_impl.HttpToolsProtocol` plus a header
    deadline (408), a header size limit (431), a drain on shutdown and a response's head sent
    with its body (:class:`CoalescingTransport`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refusal: tuple[int, str] | None = None
        self._header_timeout_s = _limits().header_timeout_s
        self._draining = False

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # the request cycles and this protocol write through it (flow control and the
        # addresses were taken from the real transport above)
        self.transport = CoalescingTransport(transport, self.loop)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:  # a pipelined request: its own deadline
            self._arm()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refusal = (431, f"request line and headers over {MAX_HEADER_BYTES} bytes")
            raise _Refused  # httptools stops parsing; uvicorn calls send_400_response

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # the last answer on this connection

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers get the same deadline

    def shutdown(self) -> None:
        """Called by uvicorn when the worker stops: finish the answer under way; give a
        connection with none ``DRAIN_S`` for a request already on its way, then close."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # answered, then closed
        else:  # idle, or a request's headers arriving (a slow client is not waited for)
            self.loop.call_later(DRAIN_S, self._close_unless_answering)

    def _close_unless_answering(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the request came: on_headers_complete made it the last one
        self.transport.close()

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; the body has its own deadline
        self._refusal = (408, f"request headers not complete within "
                              f"{self._header_timeout_s:g} s")
        self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        status, text = self._refusal or (400, msg)
        self._refusal = None
        body = text.encode("ascii", "replace")
        phrase = http.HTTPStatus(status).phrase
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode("ascii") + body)
        self.transport.close()
