from pathlib import Path

import pytest

from qkdmeet.conference.documents import (
    Document,
    DocumentError,
    DocumentStore,
    check_type,
    clean_name,
)


def test_type_checks() -> None:
    assert check_type("application/pdf; charset=binary", b"%PDF-1.7") == "application/pdf"
    assert check_type("text/html", b"<html>") == "text/html"
    for ctype, head in [
        ("application/zip", b"PK"),
        (None, b"x"),
        ("image/jpeg", b"\x89PNG"),
        ("text/plain", b"a\x00b"),
    ]:
        with pytest.raises(DocumentError) as info:
            check_type(ctype, head)
        assert info.value.status == 415


def test_names_are_made_safe() -> None:
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name('C:\\x\\re"port\n.pdf') == "report.pdf"
    assert clean_name("") == "document" and len(clean_name("a" * 500)) == 128


def test_store_survives_restart_and_rejects_bad_ids(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path, 100)
    doc_id = store.new_id()
    store.path(doc_id).write_bytes(b"hello")
    store.commit(Document(doc_id, "a.txt", 5, "text/plain", "ward", "p1"))
    again = DocumentStore(tmp_path, 100)
    assert again.get(doc_id).name == "a.txt" and [d.id for d in again.in_room("ward")] == [doc_id]
    with pytest.raises(DocumentError):
        again.path("../x")
    with pytest.raises(DocumentError):
        again.get("0" * 24)
