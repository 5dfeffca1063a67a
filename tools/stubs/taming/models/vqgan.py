"""Stub: dalle_pytorch imports these names; using them raises."""


class VQModel:
    def __init__(self, *args, **kwargs):
        raise ImportError("taming is stubbed (tools/stubs); VQGAN is not available")


class GumbelVQ(VQModel):
    pass
