#!/usr/bin/env python3
"""tiktoken's side of `ouro bench tokenizer`: loads a ranks file + its JSON sidecar (pattern,
special tokens) into a tiktoken Encoding, times encode_ordinary on the input (single thread,
best of --repeats) and its batch encoder (encode_ordinary_batch on --threads threads, the input
cut into ~64 KB pieces where a line starts with an ASCII letter, where GPT-2's and GPT-4's
patterns always split, so the concatenated ids are the same), writes the single-thread ids as
little-endian uint32 to --ids and the figures as JSON on stdout. Runs offline: nothing is
downloaded."""
import argparse
import array
import json
import os
import re
import sys
import time

import tiktoken
from tiktoken.load import load_tiktoken_bpe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    side = json.load(open(a.ranks + ".json"))
    enc = tiktoken.Encoding("ouro", pat_str=side["pattern"], mergeable_ranks=load_tiktoken_bpe(a.ranks),
                            special_tokens=side["special_tokens"])
    raw = open(a.input, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        json.dump({"skipped": f"input is not valid UTF-8 ({e}); tiktoken takes str"}, sys.stdout)
        return
    ids = enc.encode_ordinary(text)  # warm-up
    best = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        ids = enc.encode_ordinary(text)
        best = min(best, time.perf_counter() - t0)
    array.array("I", ids).tofile(open(a.ids, "wb"))
    pieces, start = [], 0
    for m in re.finditer(r"\n(?=[A-Za-z])", text):
        if m.end() - start >= 65536:
            pieces.append(text[start:m.end()])
            start = m.end()
    pieces.append(text[start:])
    batch = enc.encode_ordinary_batch(pieces, num_threads=a.threads)  # warm-up
    best_batch = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        batch = enc.encode_ordinary_batch(pieces, num_threads=a.threads)
        best_batch = min(best_batch, time.perf_counter() - t0)
    same = [t for part in batch for t in part] == ids
    json.dump({"version": tiktoken.__version__, "mb_s_1thread": len(raw) / best / 1e6,
               "tokens": len(ids), "seconds": best, "threads": a.threads,
               "mb_s_batch_threads": len(raw) / best_batch / 1e6, "batch_pieces": len(pieces),
               "batch_same_ids": same}, sys.stdout)


if __name__ == "__main__":
    main()
