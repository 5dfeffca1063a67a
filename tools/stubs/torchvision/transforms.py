"""Names `clip.clip` imports; using any of them is an error (use tools/clip_reference.py)."""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("stub torchvision: use tools/clip_reference.py's PIL preprocessing")


Compose = Resize = CenterCrop = ToTensor = Normalize = _Unavailable


class InterpolationMode:
    BICUBIC = "bicubic"
