"""What every route of the KME shares: the request keys the access gate sets,
the error answer, and request bodies read within the validation layer's limits.

A handler refuses a malformed request by raising :class:`BadRequest`; the
access gate (:mod:`qkdmeet.kme.access`) turns it into the ETSI error answer,
counts it and writes the audit line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from qkdmeet.errors import KmeError
from qkdmeet.kme import validation

if TYPE_CHECKING:
    from qkdmeet.kme.server import KmeServer

#: Keys a handler delivered (for the audit log, written by the access gate).
DELIVERED = web.RequestKey("delivered", list)
#: The caller's ID from its certificate.
CALLER = web.RequestKey("caller", str)
#: The caller's role from its certificate ("sae" or "kme"); see :mod:`qkdmeet.kme.tls`.
ROLE = web.RequestKey("role", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Routes(ABC):
    """One part of the KME's API, over the state its :class:`KmeServer` owns."""

    def __init__(self, kme: KmeServer) -> None:
        self.kme = kme

    @abstractmethod
    def add_to(self, router: web.UrlDispatcher) -> None:
        """Put this part's routes on the application's router."""


class BadRequest(KmeError):
    """A request refused with ``status`` (400, or 413/415 from the validation layer)."""

    def __init__(
        self, message: str, details: list[dict[str, str]] | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.status = status

    @classmethod
    def of(cls, exc: validation.Invalid) -> BadRequest:
        """The answer to a request the validation layer refused (stable text and code)."""
        return cls(exc.message, exc.details(), exc.status)


def error(status: int, message: str, details: list[dict[str, str]] | None = None) -> web.Response:
    """The ETSI 014 error answer: ``{"message": ..., "details": [...]}``."""
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


async def raw_body(request: web.Request) -> bytes:
    """The body's bytes within the validation layer's size and media-type limits."""
    try:
        validation.check_content_type(request.headers.get("Content-Type"))
        if (request.content_length or 0) > validation.MAX_BODY_BYTES:
            raise validation.Invalid("too_large", status=413)
    except validation.Invalid as exc:
        raise BadRequest.of(exc) from None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest.of(validation.Invalid("too_large", status=413)) from None


async def json_body(request: web.Request) -> dict[str, Any]:
    """Any JSON object body (peer and admin endpoints), depth and size bounded."""
    raw = await raw_body(request)
    try:
        return validation.json_object(raw)
    except validation.Invalid as exc:
        raise BadRequest.of(exc) from None
