"""Layer 5 (report): key generated against key consumed, per direction."""

from qkdmeet.report.accounting import (
    FIELD_TEST,
    DirectionTotals,
    FieldTestDirection,
    QkdTotals,
    Recorder,
    RunReport,
)

__all__ = [
    "FIELD_TEST",
    "DirectionTotals",
    "FieldTestDirection",
    "QkdTotals",
    "Recorder",
    "RunReport",
]
