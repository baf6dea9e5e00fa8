"""The nesting depth of a JSON text, measured on the raw bytes before any parser sees it.

Shared by the validation layers of the KME's ETSI 014 API
(:mod:`qkdmeet.kme.validation`) and of the conference
(:mod:`qkdmeet.conference.validation`): a body nested deeper than their limit is
refused without being parsed (a recursive parser would otherwise raise
``RecursionError`` on it).
"""

from __future__ import annotations

import re

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    opens = brackets.count(b"[") + brackets.count(b"{")
    if opens <= 1:
        return opens
    level = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest
