"""Shared documents (analysis reports): type checks, size limit, storage.

An upload is accepted only if its declared type is one of :data:`ALLOWED_TYPES`
and its first bytes agree with that type (a "PDF" that is not one is refused
as the wrong type). Stored bytes are returned unchanged on download, and only
to members of the document's room (the server checks the session). A document
is deleted from disk (:meth:`DocumentStore.delete`: its bytes and its metadata
file) when its room is closed or its retention ends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from qkdmeet.errors import ConferenceError

ALLOWED_TYPES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "text/html": (),
    "text/plain": (),
}
MAX_NAME = 128


class DocumentError(ConferenceError, ValueError):
    """A refused upload; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Document:
    id: str
    name: str
    size: int
    content_type: str
    room: str
    sender: str
    created: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "from": self.sender,
            "url": f"/api/documents/{self.id}",
        }


def clean_name(name: str | None) -> str:
    """A safe display/download name: last path component, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f\"]", "", base).strip() or "document"
    return base[:MAX_NAME]


def check_type(content_type: str | None, head: bytes) -> str:
    """The normalised content type, or DocumentError 415."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in ALLOWED_TYPES:
        allowed = ", ".join(ALLOWED_TYPES)
        raise DocumentError(415, f"content type {ctype or 'missing'!r} not allowed ({allowed})")
    magics = ALLOWED_TYPES[ctype]
    if magics and not any(head.startswith(m) for m in magics):
        raise DocumentError(415, f"content does not look like {ctype}")
    if not magics and b"\x00" in head:
        raise DocumentError(415, f"binary content is not {ctype}")
    return ctype


class DocumentStore:
    """Uploaded documents on disk (``<dir>/<id>`` plus ``<id>.json`` metadata)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._docs: dict[str, Document] = {}
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        for meta in directory.glob("*.json"):
            try:
                doc = Document(**json.loads(meta.read_text()))
            except (ValueError, TypeError):
                continue
            if (directory / doc.id).exists():
                self._docs[doc.id] = doc

    def new_id(self) -> str:
        return secrets.token_hex(12)

    def path(self, doc_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{24}", doc_id):
            raise DocumentError(404, f"no document {doc_id!r}")
        return self.directory / doc_id

    def commit(self, doc: Document) -> None:
        """Record a document whose bytes are already at :meth:`path`."""
        meta = self.directory / f"{doc.id}.json"
        fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(doc)))
        self._docs[doc.id] = doc

    def get(self, doc_id: str) -> Document:
        doc = self._docs.get(doc_id)
        if doc is None:
            raise DocumentError(404, f"no document {doc_id!r}")
        return doc

    def in_room(self, room: str) -> list[Document]:
        return [d for d in self._docs.values() if d.room == room]

    def usage(self, room: str) -> tuple[int, int]:
        """(number of documents, total bytes) held for a room."""
        docs = self.in_room(room)
        return len(docs), sum(d.size for d in docs)

    def delete(self, doc_id: str) -> bool:
        """Remove a document's bytes and metadata from disk; False if it was unknown."""
        doc = self._docs.pop(doc_id, None)
        (self.directory / f"{doc_id}.json").unlink(missing_ok=True)
        if re.fullmatch(r"[0-9a-f]{24}", doc_id):
            (self.directory / doc_id).unlink(missing_ok=True)
        return doc is not None

    def delete_room(self, room: str) -> list[str]:
        """Delete every document of a room; the IDs deleted."""
        ids = [d.id for d in self.in_room(room)]
        for doc_id in ids:
            self.delete(doc_id)
        return ids

    def expired(self, retention: dict[str, float | None], now: float) -> list[Document]:
        """Documents past their room's retention (``retention``: room -> seconds)."""
        return [
            d
            for d in self._docs.values()
            if (r := retention.get(d.room)) is not None and now - d.created >= r
        ]
