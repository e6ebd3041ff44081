"""specframe: train block-diffusion drafters for speculative decoding and measure what they really buy."""

__version__ = "0.1.0"
