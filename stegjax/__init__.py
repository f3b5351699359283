"""stegjax: provably secure, robust generative image steganography in JAX."""

__version__ = "0.1.0"
