"""Stub of `taming` (VQGAN) for importing dalle_pytorch; VQGanVAE is not usable."""
