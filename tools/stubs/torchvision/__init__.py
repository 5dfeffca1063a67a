"""Stub torchvision for tools/: the PyPI wheel does not load beside the CPU torch.
`clip` only imports torchvision.transforms at module level; libdalle's tools do the
preprocessing with PIL (tools/clip_reference.py)."""
