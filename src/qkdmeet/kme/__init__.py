"""Layer 2: key management entities serving ETSI GS QKD 014."""
