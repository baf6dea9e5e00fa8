"""Layer 1: the simulated QKD link and its key distillation."""

from qkdmeet.qkd.sink import KeyBlock, KeySink, ListSink

__all__ = ["KeyBlock", "KeySink", "ListSink"]
