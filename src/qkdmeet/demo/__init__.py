"""The whole system on one machine: `qkdmeet demo` (issue 6)."""
