"""Golden vectors for the tokenizer: token ids from the reference tokenizers on >= 1,000
deterministic strings, and CLIP's BPE as a libdalle tokenizer bundle.

Writes Tests/DalleCoreTests/Golden/tokenizer/:
- golden.json: {"strings": [...], "clip": [[ids]], "clip_truncated": [..],
  "dalle": [[ids]], "dalle_truncated": [..], "clip_context_length": 77, "dalle_text_length": 256,
  "mojibake": {"strings", "clip", "clip_as_written"}}
  "clip" holds clip.tokenize(s, context_length=77, truncate=True) before its zero padding;
  "dalle" holds DALLE-pytorch's tokenizer.tokenize(s, 256, truncate_text=True) likewise.
- clip_bpe.safetensors: the bundle tools/bundle_tokenizer.py writes (tokenizer only).

    python tools/make_golden_tokenizer.py
"""
import importlib.util
import json
import os
import random
import sys
import types
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "Tests", "DalleCoreTests", "Golden", "tokenizer")
sys.path.insert(0, HERE)

import bundle_tokenizer  # noqa: E402


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def load_references():
    """clip.tokenize, and DALLE-pytorch's tokenizer module loaded on its own (its package
    __init__ pulls in the whole model), with stubs for imports the tokenizer does not use."""
    stub("torchvision")
    stub("torchvision.transforms", Compose=object, Resize=object, CenterCrop=object, ToTensor=object,
         Normalize=object, InterpolationMode=types.SimpleNamespace(BICUBIC=3))
    import clip
    stub("youtokentome")
    stub("transformers", BertTokenizer=object)
    if importlib.util.find_spec("tokenizers") is None:
        stub("tokenizers", Tokenizer=object)
        stub("tokenizers.processors", ByteLevel=object)
    path = os.path.join(os.path.dirname(importlib.util.find_spec("dalle_pytorch").origin), "tokenizer.py")
    spec = importlib.util.spec_from_file_location("dalle_pytorch_tokenizer", path)
    dalle_tokenizer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dalle_tokenizer)
    return clip, dalle_tokenizer.tokenizer


SHAPES = ["circle", "square", "triangle", "star", "hexagon", "cross", "heart", "diamond"]
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "gray", "pink"]
SIZES = ["small", "large", "tiny", "big", "medium-sized"]
RELATIONS = ["to the left of", "to the right of", "above", "below", "next to", "inside", "on top of"]


def fixed_strings():
    return [
        "", " ", "   ", "\t\n\r", "a", "A", "hello world", "Hello, World!", "HELLO WORLD",
        "a photo of a cat", "An armchair in the shape of an avocado.",
        "a small red circle to the left of a large blue square",
        "an illustration of a baby daikon radish in a tutu walking a dog",
        "It's a dog's life; they're here, we've gone, I'm fine, you'll see, he'd go.",
        "IT'S DON'T WON'T Y'ALL 'TIS ''quoted'' 'single' \"double\"",
        "rock'n'roll o'clock ma'am", "'s 't 're 've 'm 'll 'd", "'", "''", "'''s", "'S'T'RE",
        "3.14159 is pi; 1,000,000 people; 2024-01-01; 10:30pm; $5.99; 50%; #1; 1st 2nd 3rd",
        "0123456789", "٣٤٥ ੧੨੩ ①②③ ½ ¾ Ⅻ ⅷ", "x²+y²=z² H₂O",
        "café naïve résumé façade jalapeño Ångström Øresund straße ŒUVRE",
        "e\u0301 a\u0300 o\u0308 n\u0303 (combining accents)", "Ａｎｄ ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ １２３ ！？",
        "ﬁne ﬂour ﬀ ﬃ ﬄ ﬅ ﬆ Ĳssel ǆ", "“curly” ‘quotes’ ‛odd‟ ʼapostrophe", "„German“ «French» ‹single›",
        "日本語のテキスト", "中文文本测试，标点符号。", "한국어 텍스트", "ｶﾀｶﾅ ﾊﾝｶｸ", "ไทย भारत العربية עברית",
        "Ελληνικά ΟΔΥΣΣΕΥΣ ΣΑΣ Σ σ ς", "Русский ТЕКСТ", "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ❤️ ✨",
        "🐱‍👤🏳️‍🌈", "&amp; &lt; &gt; &quot; &#39; &#x27; &nbsp; &copy; &eacute; &hellip;",
        "&amp;amp; &amp;lt;b&amp;gt; &AMP; &NTILDE; &nTILDE; &ntilde &amp",
        "Tom &amp; Jerry <b>bold</b> &lt;tag&gt;", "AT&T R&D Q&A &notit; &notin; &#128512; &#x1F600;",
        "&#0; &#128; &#x80; &#150; &#xD800; &#1114112; &#99999999999; &#65abc; &#x;",
        "line one\nline two &amp; <three>\nline four &amp;", "<p>html &amp; stuff</p>",
        "multiple     spaces\t\ttabs\n\nnewlines", "\u00a0non\u00a0breaking\u2003em\u3000ideographic\u2028sep\u2029para",
        "\x00null\x01\x07bell\x1b[31mred\x1b[0m\x7f", "\x85\x91\x92\x93\x94\x96\x97\x80\x99",
        "zero\u200bwidth\u200cjoiner\u200d\ufeffbom", "soft\u00adhyphen", "\ufffc\ufff9\u206a",
        "pneumonoultramicroscopicsilicovolcanoconiosis", "supercalifragilisticexpialidocious" * 3,
        "a" * 300, "ab" * 200, "z" * 1000, "1" * 100, "!" * 50 + "?" * 50, ".,;:!?()[]{}<>/\\|@#$%^&*-_=+~`",
        "<|startoftext|> hello <|endoftext|>", "<|STARTOFTEXT|><|endoftext|>", "<|endoftext|", "<|ſtartoftext|>",
        "ſ long s 'ſ", "\u0345 \u0391\u0345", "İstanbul ıi KELVIN \u212a \u212b", "ß ẞ ǅ ǈ",
        "mixed123numbers456and789letters", "camelCaseWords andSnake_case and-kebab-case",
        "https://example.com/path?query=1&other=2#frag", "user@example.com", "C++ C# F# .NET node.js",
        "the the the the the the the the", "a " * 150, "word " * 300,
    ]


def shapes_captions(rng, count):
    out = []
    for _ in range(count):
        a = f"a {rng.choice(SIZES)} {rng.choice(COLORS)} {rng.choice(SHAPES)}"
        b = f"a {rng.choice(SIZES)} {rng.choice(COLORS)} {rng.choice(SHAPES)}"
        caption = f"{a} {rng.choice(RELATIONS)} {b}"
        style = rng.randrange(4)
        if style == 1:
            caption = caption.capitalize() + "."
        elif style == 2:
            caption = caption.upper()
        elif style == 3:
            caption = f"{caption}, and {rng.randrange(1, 10)} {rng.choice(COLORS)} {rng.choice(SHAPES)}s"
        out.append(caption)
    return out


def assigned(cp):
    c = chr(cp)
    return unicodedata.category(c) not in ("Cn", "Cs", "Co")


POOLS = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
    (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2100, 0x218F),
    (0x2190, 0x23FF), (0x2460, 0x24FF), (0x2600, 0x27BF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAFFF),
    (0xFB00, 0xFB4F), (0xFE30, 0xFE6F), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
]


def random_unicode(rng, count):
    out = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randrange(1, 40)):
            if rng.random() < 0.25:
                chars.append(rng.choice(" \t\n'.,!?&;#"))
                continue
            lo, hi = rng.choice(POOLS)
            cp = rng.randrange(lo, hi + 1)
            if assigned(cp):
                chars.append(chr(cp))
        out.append("".join(chars))
    return out


WORDS = ("the quick brown fox jumps over lazy dog photo painting of an astronaut riding horse in space "
         "cyberpunk city at night oil on canvas watercolor 4k highly detailed trending on artstation "
         "don't can't isn't it's we're they've I'm you'll she'd").split()


def random_captions(rng, count):
    out = []
    for _ in range(count):
        length = rng.randrange(1, 30) if rng.random() < 0.9 else rng.randrange(60, 300)
        words = [rng.choice(WORDS) for _ in range(length)]
        for i in range(len(words)):
            r = rng.random()
            if r < 0.1:
                words[i] = words[i].upper()
            elif r < 0.2:
                words[i] = words[i].capitalize()
            elif r < 0.25:
                words[i] += rng.choice([",", ".", "!", "?", ";", "...", "!!!", " &amp;", "'s"])
            elif r < 0.28:
                words[i] = str(rng.randrange(0, 100000))
        out.append(rng.choice([" ", "  ", " \t"]).join(words))
    return out


def entity_strings(rng, count):
    import html.entities
    names = sorted(html.entities.html5)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randrange(1, 6)):
            r = rng.random()
            if r < 0.5:
                parts.append("&" + rng.choice(names))
            elif r < 0.7:
                parts.append("&#%d;" % rng.randrange(0, 0x3000))
            elif r < 0.8:
                parts.append("&#x%x;" % rng.randrange(0, 0x20000))
            else:
                parts.append(rng.choice(WORDS))
        out.append(rng.choice(["", " "]).join(parts))
    return out


def build_strings():
    rng = random.Random(20240611)
    strings = fixed_strings()
    strings += shapes_captions(rng, 300)
    strings += random_captions(rng, 300)
    strings += random_unicode(rng, 300)
    strings += entity_strings(rng, 150)
    return strings


# Mojibake (UTF-8 read as Latin-1 / windows-1252), which ftfy's fix_encoding repairs and
# libdalle does not: the one known difference, kept apart in golden.json["mojibake"].
MOJIBAKE = ["cafÃ©", "CafÃ© au lait", "voilÃ le travail", "Ã©tÃ© Ã  la plage", "â€œquotedâ€\x9d text",
            "itâ€™s a dog", "a photo Â of a cat", "seÃ±or jalapeÃ±o", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€", "Ã\xa0 la carte"]


def clip_ids(tokenizer, text):
    ids = [49406] + tokenizer.encode(text) + [49407]
    if len(ids) > 77:
        ids = ids[:76] + [49407]
    return ids


def mojibake_section(clip):
    """CLIP's ids of the mojibake strings, and the ids with ftfy's fix_encoding turned off
    (the text as written), which is what libdalle gives."""
    import clip.simple_tokenizer as simple
    tokenizer = clip.clip._tokenizer
    section = {"strings": MOJIBAKE, "clip": [clip_ids(tokenizer, s) for s in MOJIBAKE]}
    fix_text = simple.ftfy.fix_text
    simple.ftfy.fix_text = lambda text: fix_text(text, fix_encoding=False)
    try:
        section["clip_as_written"] = [clip_ids(tokenizer, s) for s in MOJIBAKE]
    finally:
        simple.ftfy.fix_text = fix_text
    assert all(a != b for a, b in zip(section["clip"], section["clip_as_written"])), "a MOJIBAKE string is not repaired"
    return section


def main():
    clip, dalle_tokenizer = load_references()
    strings = build_strings()
    golden = {"clip_context_length": 77, "dalle_text_length": 256, "strings": strings,
              "clip": [], "clip_truncated": [], "dalle": [], "dalle_truncated": []}
    for s in strings:
        tokens = [clip.clip._tokenizer.encoder["<|startoftext|>"]] + clip.clip._tokenizer.encode(s) + [clip.clip._tokenizer.encoder["<|endoftext|>"]]
        row = clip.tokenize(s, context_length=77, truncate=True)[0].tolist()
        count = min(len(tokens), 77)
        assert all(v == 0 for v in row[count:])
        golden["clip"].append(row[:count])
        golden["clip_truncated"].append(len(tokens) > 77)
        ids = dalle_tokenizer.encode(s)
        row = dalle_tokenizer.tokenize(s, context_length=256, truncate_text=True)[0].tolist()
        count = min(len(ids), 256)
        golden["dalle"].append(row[:count])
        golden["dalle_truncated"].append(len(ids) > 256)
    golden["mojibake"] = mojibake_section(clip)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, ensure_ascii=True, separators=(",", ":"))
    bundle_tokenizer.write_tokenizer_bundle(os.path.join(OUT, "clip_bpe.safetensors"))
    print(f"{len(strings)} strings, {sum(golden['clip_truncated'])} truncated for CLIP, "
          f"{sum(golden['dalle_truncated'])} for DALL-E; wrote {OUT}")


if __name__ == "__main__":
    main()
