"""qkdmeet.report layer (see DESIGN.md)."""
