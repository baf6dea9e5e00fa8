"""qkdmeet.testbed layer (see DESIGN.md)."""
