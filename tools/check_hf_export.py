#!/usr/bin/env python3
"""Checks that Hugging Face transformers loads an ouro checkpoint and agrees with it.

Loads CKPT with GPT2LMHeadModel.from_pretrained (offline), computes the mean cross-entropy of
the first N windows of SHARD in float64, and compares it with `ouro eval --json` on the same
windows. Needs the fixture venv: tools/setup.sh --fixtures.

    .venv/bin/python tools/check_hf_export.py CKPT SHARD [--ouro build/ouro] [--batches 2]
"""
import argparse
import json
import subprocess
import sys

import numpy as np
import torch
from transformers import GPT2LMHeadModel


def read_shard(path):
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] == 20240520, f"{path}: bad magic {header[0]}"
    dtype = np.uint16 if header[1] == 1 else np.uint32
    return np.fromfile(path, dtype=dtype, offset=1024, count=int(header[2])).astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("shard")
    ap.add_argument("--ouro", default="build/ouro")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--batches", type=int, default=2)
    a = ap.parse_args()

    model = GPT2LMHeadModel.from_pretrained(a.ckpt, attn_implementation="eager").double().eval()
    T = model.config.n_positions
    toks = read_shard(a.shard)
    n = a.batch * a.batches
    # ouro's evaluation windows: T+1 tokens starting every T tokens, in file order.
    x = np.stack([toks[i * T:i * T + T] for i in range(n)])
    y = np.stack([toks[i * T + 1:i * T + T + 1] for i in range(n)])
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).logits
        hf_loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1)).item()
    out = subprocess.run([a.ouro, "eval", "--init", a.ckpt, "--data", a.shard, "--batch",
                          str(a.batch), "--batches", str(a.batches), "--json"],
                         check=True, capture_output=True, text=True).stdout
    ouro_loss = json.loads(out)["loss"]
    rel = abs(hf_loss - ouro_loss) / hf_loss
    print(f"transformers loss {hf_loss:.8f}  ouro loss {ouro_loss:.8f}  relative difference {rel:.2e}")
    sys.exit(0 if rel < 1e-5 else 1)


if __name__ == "__main__":
    main()
