"""Stub of transformers for importing dalle_pytorch; ChineseTokenizer is not usable."""


class BertTokenizer:
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise ImportError("transformers is stubbed (tools/stubs)")
