"""qkdmeet.conference layer (see DESIGN.md)."""
