#!/usr/bin/env python3
"""Writes the tokenizer fixtures under tests/tokenizer/fixtures/ with the reference
implementation, Hugging Face `tokenizers` (pip install tokenizers jinja2).

    python3 tests/tokenizer/make_fixtures.py            # from the repository root

Each fixture names a tokenizer (a folder in ../shared/tokenizers/, a folder of this
repository, or a tokenizer.json held inline), an optional patch applied to its JSON
("set": dotted key -> value, "append": dotted key -> list), and cases:
  {"name", "text", "ids" (encode, add_special_tokens=False), "decoded" (decode of ids,
   skip_special_tokens=False), "roundtrip" (decoded == the text after the normalizer)}
plus "decode_cases": id lists (random ids, split UTF-8 sequences) and what HF decodes them to.
prompt_formats.json holds chat-template renderings made with the models' own Jinja templates.
The C++ tests (tests/policy/) must reproduce every id and every string exactly.
"""
import copy
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "tokenizers")
OUT = os.path.join(ROOT, "tests", "tokenizer", "fixtures")


def corpus():
    """(name, text) pairs covering scripts, code, math, emoji, whitespace and edge cases."""
    rng = random.Random(20240604)
    long_word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3000))
    # Random code points assigned in Unicode 14 (PCRE2 10.42's version; HF's Oniguruma knows
    # 15.0, so newer letters would differ), spaces between some.
    import unicodedata
    blocks = [(0x20, 0x7F), (0xA0, 0x3000), (0x3000, 0xA000), (0xAC00, 0xD7A4), (0xE000, 0x10000),
              (0x10000, 0x20000), (0x1F300, 0x1FB00), (0x0, 0x20)]
    random_chars = []
    while len(random_chars) < 6000:
        lo, hi = rng.choice(blocks)
        cp = rng.randrange(lo, hi)
        if 0xD800 <= cp < 0xE000 or unicodedata.category(chr(cp)) == "Cn":
            continue
        random_chars.append(chr(cp))
        if rng.random() < 0.2:
            random_chars.append(" ")
    random_text = "".join(random_chars)
    return [
        ("empty", ""),
        ("english", "The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see what they've done!"),
        ("contractions", "I'm sure you're right, he'd say she's gone. DON'T SHOUT: I'LL GO. We'Re 'tis 'ſ 'K"),
        ("chinese", "机器学习是人工智能的一个分支。它使计算机能够从数据中学习，而无需明确编程。"),
        ("japanese", "東京は日本の首都です。ひらがな、カタカナ、漢字を混ぜて書きます。ｶﾀｶﾅ"),
        ("korean", "안녕하세요, 세계! 한국어 텍스트 토큰화 테스트입니다. 한글 자모: ㄱㄴㄷ"),
        ("mixed_scripts", "Hello世界 Привет мир مرحبا بالعالم שלום नमस्ते Γειά σου κόσμε ไทย"),
        ("code_python", "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n"),
        ("code_cpp", "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2; // double\n\treturn v.size() > 2 ? 0 : 1;\n}\n"),
        ("latex", r"Let $f(x) = \int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}$ and \begin{align} a^2 + b^2 &= c^2 \\ \sum_{k=1}^{n} k &= \frac{n(n+1)}{2} \end{align}"),
        ("math_answer", "So the answer is \\boxed{42}. Check: 6 × 7 = 42 ✓, 3.14159 ≈ π, −5 ≤ x ≤ 1e-9."),
        ("emoji", "I ❤️ tokenizers 🎉🎉 😀😃😄 👍🏽 🇯🇵 🏳️‍🌈"),
        ("emoji_zwj", "Family: 👨‍👩‍👧‍👦, couple: 👩‍❤️‍👨, technologist: 👩🏾‍💻, flags 🏴‍☠️"),
        ("whitespace_runs", "a  b   c    d\t\te \t \t f          g\n\n\nh \n \n i   \n"),
        ("only_spaces", "                                                "),
        ("crlf", "line one\r\nline two\r\n\r\n  indented\r\n\ttabbed\r\rend\r\n"),
        ("digits", "0 1 12 123 1234 12345 123456 3.14159265358979 1,000,000 2024-06-04 ٠١٢٣ ０１２ ①②"),
        ("combining", "e\u0301 a\u0308 n\u0303 cafe\u0301 A\u030a\u0301 \u1100\u1161\u11a8 o\u0302\u0323 \u0915\u093c"),
        ("nfc_precomposed", "café naïve résumé Ångström ñandú"),
        ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u202fe\u200bf\u2028g\u0085h\u180ei\ufeffj"),
        ("special_tokens_qwen", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nsimple</think>4<|im_end|><|endoftext|>"),
        ("special_tokens_deepseek", "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>2+2?<｜Assistant｜><think>\n4</think>4<｜end▁of▁sentence｜>"),
        ("special_tokens_adjacent", "x<|im_end|><|im_end|>y <|endoftext|> <|im_start|>z<|im_start"),
        ("partial_specials", "<|im_sta <|im_end| |im_end|> <｜User <think </think <|endoftext"),
        ("punctuation", "!!! ??? ... --- ((())) [[]] {{}} <<>> @#$%^&*_+=~`|\\/ \"quoted\" 'single' «guillemets» „low“"),
        ("urls_paths", "https://example.com/a/b?c=d&e=f#g /usr/local/bin/grpo C:\\Users\\me\\file.txt user@mail.org"),
        ("json", '{"name": "grpo", "ids": [1, 2, 3], "nested": {"ok": true, "x": null}}'),
        ("long_word", long_word),
        ("long_repeat", "a" * 2000 + " " + "ab" * 700 + " " + "1" * 500),
        ("long_mixed_line", ("Supercalifragilisticexpialidocious 超长的中文单词没有空格 " * 20).strip()),
        ("leading_trailing_space", "   leading and trailing   "),
        ("single_chars", "a"),
        ("newline_only", "\n"),
        ("private_use_and_rare", "\ue000\uf8ff 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \U0001F9EC \u2603 \u00ad soft\u00adhyphen"),
        ("fullwidth", "ＡＢＣ　ｄｅｆ！？　１２３"),
        ("random_unicode", random_text),
    ]


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def apply_patch(j, patch):
    j = copy.deepcopy(j)
    for key, value in patch.get("set", {}).items():
        parts = key.split(".")
        node = j
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    for key, values in patch.get("append", {}).items():
        parts = key.split(".")
        node = j
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = list(node[parts[-1]]) + values
    return j


def make_cases(tok, texts, roundtrip):
    cases = []
    for name, text in texts:
        enc = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(enc.ids, skip_special_tokens=False)
        cases.append({"name": name, "text": text, "ids": enc.ids, "decoded": decoded, "roundtrip": roundtrip})
    return cases


def decode_cases(tok, vocab_size, rng, n):
    """Random id lists (valid ids only; HF drops unknown ids, we reject them)."""
    ids_all = list(range(vocab_size))
    cases = []
    for k in range(n):
        ids = [rng.choice(ids_all) for _ in range(rng.randint(1, 12))]
        cases.append({"ids": ids, "skip_special": k % 3 == 0,
                      "decoded": tok.decode(ids, skip_special_tokens=(k % 3 == 0))})
    return cases


def byte_token_cases(tok, text):
    """A text's bytes as single byte tokens, cut anywhere: split UTF-8 sequences."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    alphabet, n = {}, 256
    for b in range(256):
        if b in bs:
            alphabet[b] = chr(b)
        else:
            alphabet[b] = chr(n)
            n += 1
    raw = text.encode("utf-8")
    cases = []
    for cut in range(1, len(raw) + 1):
        ids = [vocab[alphabet[b]] for b in raw[:cut]]
        cases.append({"ids": ids, "skip_special": False, "decoded": tok.decode(ids, skip_special_tokens=False)})
    # Invalid sequences: a lone continuation byte, an overlong lead, a truncated 4-byte lead.
    for seq in ([0x80, 0x41], [0xC0, 0xAF], [0xF0, 0x9F, 0x41], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE4, 0xBD]):
        ids = [vocab[alphabet[b]] for b in seq]
        cases.append({"ids": ids, "skip_special": False, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_level(add_prefix_space=False, use_regex=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": False, "use_regex": use_regex}


def split(pattern, behavior, invert=False, literal=False):
    return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern}, "behavior": behavior,
            "invert": invert}


def variants():
    """Patched copies of the Qwen3 file that exercise the rest of the format."""
    return [
        ("llama3_style", "Llama-3 regex (digits in threes) and ignore_merges",
         {"set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN, "Isolated"), byte_level()]},
                  "model.ignore_merges": True, "normalizer": None}}, True),
        ("gpt2_style", "ByteLevel with its own GPT-2 regex and add_prefix_space",
         {"set": {"pre_tokenizer": byte_level(add_prefix_space=True, use_regex=True), "normalizer": None}}, False),
        ("split_removed", "Split on a literal string, Removed",
         {"set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(" ", "Removed", literal=True), byte_level()]}}}, False),
        ("split_merged_previous", "MergedWithPrevious on punctuation",
         {"set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(r"[\p{P}\s]", "MergedWithPrevious"), byte_level()]}}}, True),
        ("split_merged_next", "MergedWithNext on whitespace",
         {"set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(r"\s", "MergedWithNext"), byte_level()]}}}, True),
        ("split_contiguous_inverted", "Contiguous, inverted, then Isolated digits",
         {"set": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
             split(r"\p{L}+", "Contiguous", invert=True), split(r"\p{N}", "Isolated"), byte_level()]}}}, True),
        ("nfkc_sequence", "a Sequence of NFD then NFKC",
         {"set": {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "NFKC"}]}}}, True),
        ("added_token_rules", "added tokens with lstrip, rstrip, single_word and normalized",
         {"append": {"added_tokens": [
             {"id": 151669, "content": "[MASK]", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
             {"id": 151670, "content": "<sep>", "single_word": False, "lstrip": False, "rstrip": True, "normalized": False, "special": True},
             {"id": 151671, "content": "xqz", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
             {"id": 151672, "content": "cafe\u0301", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
             {"id": 151673, "content": "<sep>long", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
             # Already in the vocab: HF gives it the vocab's id.
             {"id": 4616, "content": "cat", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
         ]}}, False),
    ]


VARIANT_TEXTS = [
    ("english", "The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see!"),
    ("digits", "0 1 12 123 1234 12345 123456 3.14159265358979 1,000,000"),
    ("code", "def f(x):\n    return x  +  1  # comment\n\n\nprint(f(41))\r\n"),
    ("cjk", "机器学习是人工智能的一个分支。東京は日本の首都です。안녕하세요, 세계!"),
    ("whitespace", "a  b   c\t\td \n\n e   "),
    ("specials", "<|im_start|>user\nhi<|im_end|>\n"),
    ("combining", "e\u0301 cafe\u0301 ﬁ ① ＡＢＣ ｶﾀｶﾅ A\u030a"),
    ("added_rules", "a [MASK] b   [MASK]c <sep>   x <sep>long cat concat cat_ cat. (cat) cafe\u0301 café\u3000[MASK]"),
    ("single_word", "xqz xqzxqz xqz_ xqz. (xqz) axqz xqz1 éxqz 中xqz xqz中 \txqz\n"),
    ("long_word", "pneumonoultramicroscopicsilicovolcanoconiosis" * 8),
]


def byte_fallback_tokenizer():
    """A small char-level BPE with byte_fallback (no ByteLevel): the sentencepiece-style path."""
    vocab = {}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in " abcdefghijklmnopqrstuvwxyz.,!?'0123456789\n":
        vocab[c] = len(vocab)
    merges = [("t", "h"), ("th", "e"), ("i", "n"), ("in", "g"), (" ", "the"), ("e", "r"), ("o", "n")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": len(vocab), "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": split(r"\s", "MergedWithNext"),
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }


def write(name, doc):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def render_chat_templates():
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader())
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    conversations = [
        ("user_only", [{"role": "user", "content": "What is 2+2?"}], True),
        ("with_system", [{"role": "system", "content": "You are a careful mathematician."},
                         {"role": "user", "content": "Prove that √2 is irrational."}], True),
        ("multi_turn", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                        {"role": "user", "content": "Count to 3."}], True),
        ("finished", [{"role": "user", "content": "Say ok."}, {"role": "assistant", "content": "ok"}], False),
    ]
    out = {}
    for name, fmt in (("qwen3", "chatml"), ("deepseek_v3", "deepseek_v3")):
        config = load_json(os.path.join(SHARED, name, "tokenizer_config.json"))
        template = env.from_string(config["chat_template"])
        bos = config.get("bos_token")
        bos = bos["content"] if isinstance(bos, dict) else bos
        cases = []
        for cname, messages, gen in conversations:
            text = template.render(messages=messages, add_generation_prompt=gen, bos_token=bos or "")
            # Qwen3's template rewrites the last assistant turn (an empty <think> block): not
            # plain ChatML, so not modelled by the "chatml" format.
            modelled = not (fmt == "chatml" and not gen)
            cases.append({"name": cname, "messages": messages, "add_generation_prompt": gen, "text": text,
                          "modelled": modelled})
        out[name] = {"format": fmt, "cases": cases}
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(7)
    texts = corpus()
    meta = {"hf_tokenizers_version": tokenizers.__version__}

    for name in ("qwen3", "deepseek_v3"):
        path = os.path.join(SHARED, name, "tokenizer.json")
        if not os.path.exists(path):
            sys.exit(f"make_fixtures: {path} is missing (the shared tokenizers folder)")
        tok = Tokenizer.from_file(path)
        doc = dict(meta, tokenizer={"shared": name}, patch=None, cases=make_cases(tok, texts, True))
        doc["decode_cases"] = decode_cases(tok, tok.get_vocab_size(with_added_tokens=True), rng, 40) + \
            byte_token_cases(tok, "añ中🎉\u0301")
        write(name, doc)

    preset = os.path.join(ROOT, "configs", "tokenizers", "byte_level", "tokenizer.json")
    tok = Tokenizer.from_file(preset)
    doc = dict(meta, tokenizer={"repo": "configs/tokenizers/byte_level"}, patch=None, cases=make_cases(tok, texts, True))
    doc["decode_cases"] = decode_cases(tok, tok.get_vocab_size(with_added_tokens=True), rng, 20)
    write("byte_level", doc)

    base = load_json(os.path.join(SHARED, "qwen3", "tokenizer.json"))
    variant_docs = []
    for name, what, patch, roundtrip in variants():
        tok = Tokenizer.from_str(json.dumps(apply_patch(base, patch)))
        variant_docs.append(dict(name=name, description=what, tokenizer={"shared": "qwen3"}, patch=patch,
                                 cases=make_cases(tok, VARIANT_TEXTS, roundtrip)))
    fb = byte_fallback_tokenizer()
    tok = Tokenizer.from_str(json.dumps(fb))
    v = fb["model"]["vocab"]
    fallback_ids = [[v["<0xE4>"], v["<0xBD>"]], [v["<0xE4>"], v["<0xBD>"], v["<0xA0>"]],
                    [v["<0xE4>"], v["<0xBD>"], v["a"]], [v["<0xE4>"], v["a"], v["<0xBD>"], v["<0xA0>"]],
                    [v["<0x80>"]], [v["h"], v["<0xC3>"], v["<0xA9>"], v["<0xF0>"], v["<0x9F>"], v["t"]],
                    [v["<0x41>"], v["<0xE4>"], v["<0xBD>"], v["<0xA0>"], v["<0xE5>"]]]
    variant_docs.append(dict(name="byte_fallback", description="char-level BPE with byte_fallback and a ByteFallback decoder",
                             tokenizer={"inline": fb}, patch=None,
                             cases=make_cases(tok, VARIANT_TEXTS + [("bytes", "héllo wörld 中文 🎉 the thing</s>")], False),
                             decode_cases=[{"ids": ids, "skip_special": False, "decoded": tok.decode(ids)}
                                           for ids in fallback_ids]))
    write("variants", dict(meta, variants=variant_docs))

    write("prompt_formats", dict(meta, jinja2=__import__("jinja2").__version__, formats=render_chat_templates()))


if __name__ == "__main__":
    main()
