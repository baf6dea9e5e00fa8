"""qkdmeet.vpn layer (see DESIGN.md)."""
