"""Classical (non-provably-secure) embedding used as positive controls in steganalysis."""
