"""Stub of youtokentome for importing dalle_pytorch; YttmTokenizer is not usable."""


class BPE:
    def __init__(self, *args, **kwargs):
        raise ImportError("youtokentome is stubbed (tools/stubs)")


class OutputType:
    ID = 0
    SUBWORD = 1
