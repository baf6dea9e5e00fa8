"""qkdmeet.conference: the video conference that runs across the VPN.

See docs/ARCHITECTURE.md (the layers) and PROTOCOL.md here (the wire protocol).
"""
