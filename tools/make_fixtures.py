#!/usr/bin/env python3
"""Regenerate the Hugging Face reference fixtures for the CPU GPT-2 parity tests.

Run once by a developer (never by the tests), after `tools/setup.sh --fixtures`:

    HF_HUB_OFFLINE=1 .venv/bin/python tools/make_fixtures.py [--out tests/fixtures/gpt2_tiny]

Writes into the output directory:
  config.json, model.safetensors  tiny random GPT-2 saved by GPT2LMHeadModel.save_pretrained
  reference.safetensors           float64-computed logits, loss, gradients and a 10-step AdamW run
  model_v3.bin                    the same weights in llm.c's fp32 model file format (version 3)
  model_v5.bin                    the same weights in llm.c's bf16 model file format (version 5)
  README.md                       description, command and package versions

Everything is seeded; no network access is needed.

    .venv/bin/python tools/make_fixtures.py --tokenizer [--out tests/fixtures/tokenizer] [--ouro build/ouro]

makes the tokenizer parity fixtures instead (tools/tokenizer_fixtures.py: tiktoken's ids on a
mixed corpus, tokenizers trained by ouro and tiktoken's ids with them); it needs neither torch
nor transformers.
"""
import argparse
import json
import os
import struct
import sys
from pathlib import Path

if __name__ == "__main__" and "--tokenizer" in sys.argv[1:]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tokenizer_fixtures import main as tokenizer_main  # noqa: E402

    sys.exit(tokenizer_main(sys.argv[1:]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import load_file as np_load_file  # noqa: E402
from safetensors.numpy import save_file as np_save_file  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

SEED = 1234
V, MAXT, C, L, NH = 371, 24, 48, 2, 4
VP = (V + 127) // 128 * 128  # padded vocab, as llm.c does
B, T = 3, 19
LR, BETA1, BETA2, EPS, WD, CLIP, STEPS = 1e-2, 0.9, 0.95, 1e-8, 0.1, 1.0, 10
LLMC_MAGIC = 20240326


def make_config() -> GPT2Config:
    cfg = GPT2Config(
        vocab_size=V, n_positions=MAXT, n_embd=C, n_layer=L, n_head=NH,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        summary_first_dropout=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        use_cache=False, bos_token_id=None, eos_token_id=None,
    )
    cfg._attn_implementation = "eager"
    return cfg


def randomize_(model: GPT2LMHeadModel, gen: torch.Generator) -> None:
    """Overwrite every parameter (in named_parameters order) with seeded, non-trivial values."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = lambda s: torch.randn(p.shape, generator=gen, dtype=torch.float32) * s  # noqa: E731
            is_ln = ".ln_" in name or name.startswith("transformer.ln_f")
            if is_ln and name.endswith(".weight"):
                p.copy_(1.0 + noise(0.1))
            elif name.endswith(".bias"):
                p.copy_(noise(0.05))
            else:
                p.copy_(noise(0.08))


def load_model(d: Path, dtype: torch.dtype) -> GPT2LMHeadModel:
    m = GPT2LMHeadModel.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager",
                                        local_files_only=True)
    m = m.to(dtype)
    m.eval()
    assert m.lm_head.weight is m.transformer.wte.weight, "wte/lm_head must be tied"
    return m


def ce_loss(model, tokens, targets):
    logits = model(input_ids=tokens).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return logits, loss


def f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns, round-to-nearest-even (inputs are finite)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def llmc_tensors(w: dict) -> list:
    """HF state dict (numpy fp32) -> llm.c parameter tensors, in file order, (out,in) layout."""
    h = lambda i, n: w[f"transformer.h.{i}.{n}"]  # noqa: E731
    stack = lambda n, tr=False: np.stack([h(i, n).T if tr else h(i, n) for i in range(L)])  # noqa: E731
    wte = np.zeros((VP, C), np.float32)
    wte[:V] = w["transformer.wte.weight"]
    return [
        wte, w["transformer.wpe.weight"],
        stack("ln_1.weight"), stack("ln_1.bias"),
        stack("attn.c_attn.weight", True), stack("attn.c_attn.bias"),
        stack("attn.c_proj.weight", True), stack("attn.c_proj.bias"),
        stack("ln_2.weight"), stack("ln_2.bias"),
        stack("mlp.c_fc.weight", True), stack("mlp.c_fc.bias"),
        stack("mlp.c_proj.weight", True), stack("mlp.c_proj.bias"),
        w["transformer.ln_f.weight"], w["transformer.ln_f.bias"],
    ]


def llmc_header(version: int) -> np.ndarray:
    hdr = np.zeros(256, np.int32)
    hdr[:8] = [LLMC_MAGIC, version, MAXT, V, L, NH, C, VP]
    return hdr


def write_llmc(path: Path, tensors: list, version: int) -> None:
    with open(path, "wb") as f:
        f.write(llmc_header(version).tobytes())
        for t in tensors:
            t = np.ascontiguousarray(t, dtype=np.float32)
            f.write((t if version == 3 else bf16_bits(t)).tobytes())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures/gpt2_tiny"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)

    # 1. Tiny random model, every parameter overwritten, saved by HF.
    model = GPT2LMHeadModel(make_config())
    randomize_(model, gen)
    model.eval()
    for stale in ("model.safetensors", "config.json", "generation_config.json"):
        (out / stale).unlink(missing_ok=True)
    model.save_pretrained(str(out))
    (out / "generation_config.json").unlink(missing_ok=True)  # not needed by the tests

    # Keep only real parameters in model.safetensors (drop buffers such as attn.bias masks, if any).
    param_names = [n for n, _ in model.named_parameters()]
    saved = np_load_file(str(out / "model.safetensors"))
    extra = sorted(set(saved) - set(param_names))
    missing = sorted(set(param_names) - set(saved))
    assert not missing, f"save_pretrained dropped parameters: {missing}"
    if extra:
        print(f"make_fixtures: removing non-parameter tensors from model.safetensors: {extra}")
        with safetensors.safe_open(str(out / "model.safetensors"), "np") as f:
            meta = f.metadata()
        np_save_file({n: saved[n] for n in param_names}, str(out / "model.safetensors"), metadata=meta)
    weights = np_load_file(str(out / "model.safetensors"))
    assert sorted(weights) == sorted(param_names)

    tokens = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)

    # Check: the saved directory reloads to the same fp32 model.
    with torch.no_grad():
        ref32 = model(input_ids=tokens).logits
        re32 = load_model(out, torch.float32)
        for n, p in re32.named_parameters():
            assert np.array_equal(p.detach().numpy(), weights[n]), n
        diff = (re32(input_ids=tokens).logits - ref32).abs().max().item()
    assert diff == 0.0, f"reloaded fp32 logits differ by {diff}"

    # 2. float64 forward/backward from exactly the saved weights.
    m64 = load_model(out, torch.float64)
    logits, loss = ce_loss(m64, tokens, targets)
    loss.backward()
    ref = {
        "tokens": tokens.to(torch.int32).numpy(),
        "targets": targets.to(torch.int32).numpy(),
        "logits": f32(logits),
        "loss": f32(loss.reshape(1)),
    }
    for n, p in m64.named_parameters():
        ref[f"grad.{n}"] = f32(p.grad)
    # fp64 vs fp32 sanity: same model, so the logits must agree closely.
    d64 = (logits.detach() - ref32.double()).abs().max().item()
    assert d64 < 1e-4, f"fp64 vs fp32 logits differ by {d64}"

    # 3. 10 AdamW steps from the saved weights, float64.
    m64 = load_model(out, torch.float64)
    decay = [p for _, p in m64.named_parameters() if p.dim() >= 2]
    no_decay = [p for _, p in m64.named_parameters() if p.dim() < 2]
    assert len(decay) + len(no_decay) == len(param_names)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(BETA1, BETA2), eps=EPS, foreach=False, fused=False)
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _, l = ce_loss(m64, tokens, targets)
        losses.append(l.item())
        l.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(m64.parameters(), CLIP).item())
        opt.step()
    ref["adam_losses"] = np.array(losses, np.float32)
    ref["adam_grad_norms"] = np.array(norms, np.float32)
    for n, p in m64.named_parameters():
        ref[f"adam_final.{n}"] = f32(p)

    meta = {"lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2), "eps": repr(EPS),
            "weight_decay": repr(WD), "grad_clip": repr(CLIP), "B": str(B), "T": str(T),
            "steps": str(STEPS), "seed": str(SEED), "compute_dtype": "float64",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__}
    np_save_file(ref, str(out / "reference.safetensors"), metadata=meta)
    sort_safetensors_metadata(out / "reference.safetensors")

    # 4. llm.c model files.
    tensors = llmc_tensors(weights)
    write_llmc(out / "model_v3.bin", tensors, 3)
    write_llmc(out / "model_v5.bin", tensors, 5)
    check_llmc(out, weights, tensors)
    check_llmc_forward(out, ref["tokens"], logits.detach().numpy())

    write_readme(out, weights)
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"make_fixtures: loss={losses[0]:.6f} final_adam_loss={losses[-1]:.6f} "
          f"wrote {out} ({total} bytes)")
    assert total < 2 * 1024 * 1024
    return 0


def sort_safetensors_metadata(path: Path) -> None:
    """safetensors writes __metadata__ in hash-map order; rewrite it sorted so the file is byte-reproducible."""
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    raw[8:8 + n] = text + b" " * (n - len(text))
    path.write_bytes(bytes(raw))


def check_llmc(out: Path, weights: dict, tensors: list) -> None:
    """Decode the llm.c files independently and compare with the HF weights."""
    counts = [t.size for t in tensors]
    for version in (3, 5):
        raw = (out / f"model_v{version}.bin").read_bytes()
        hdr = np.frombuffer(raw[:1024], np.int32)
        assert list(hdr[:8]) == [LLMC_MAGIC, version, MAXT, V, L, NH, C, VP] and not hdr[8:].any()
        if version == 3:
            flat = np.frombuffer(raw[1024:], np.float32)
        else:
            flat = (np.frombuffer(raw[1024:], np.uint16).astype(np.uint32) << 16).view(np.float32)
        assert flat.size == sum(counts)
        parts = np.split(flat, np.cumsum(counts)[:-1])
        wte = parts[0].reshape(VP, C)
        assert not wte[V:].any()
        dec = {"transformer.wte.weight": wte[:V], "transformer.wpe.weight": parts[1].reshape(MAXT, C),
               "transformer.ln_f.weight": parts[14], "transformer.ln_f.bias": parts[15]}
        per_layer = [("ln_1.weight", (C,), False), ("ln_1.bias", (C,), False),
                     ("attn.c_attn.weight", (3 * C, C), True), ("attn.c_attn.bias", (3 * C,), False),
                     ("attn.c_proj.weight", (C, C), True), ("attn.c_proj.bias", (C,), False),
                     ("ln_2.weight", (C,), False), ("ln_2.bias", (C,), False),
                     ("mlp.c_fc.weight", (4 * C, C), True), ("mlp.c_fc.bias", (4 * C,), False),
                     ("mlp.c_proj.weight", (C, 4 * C), True), ("mlp.c_proj.bias", (C,), False)]
        for k, (n, shape, tr) in enumerate(per_layer):
            st = parts[2 + k].reshape((L,) + shape)
            for i in range(L):
                dec[f"transformer.h.{i}.{n}"] = st[i].T if tr else st[i]
        assert sorted(dec) == sorted(weights)
        for n, w in weights.items():
            if version == 3:
                assert np.array_equal(dec[n], w), n
            else:
                want = torch.from_numpy(w).to(torch.bfloat16).to(torch.float32).numpy()
                assert np.array_equal(dec[n], want), n


def check_llmc_forward(out: Path, tokens: np.ndarray, want: np.ndarray) -> None:
    """Independent float64 numpy GPT-2 forward from model_v3.bin (llm.c layout) vs the HF logits."""
    flat = np.frombuffer((out / "model_v3.bin").read_bytes()[1024:], np.float32).astype(np.float64)
    shapes = [(VP, C), (MAXT, C), (L, C), (L, C), (L, 3 * C, C), (L, 3 * C), (L, C, C), (L, C),
              (L, C), (L, C), (L, 4 * C, C), (L, 4 * C), (L, C, 4 * C), (L, C), (C,), (C,)]
    sizes = [int(np.prod(s)) for s in shapes]
    (wte, wpe, ln1w, ln1b, qkvw, qkvb, attw, attb, ln2w, ln2b, fcw, fcb, fcpw, fcpb, lnfw, lnfb) = [
        p.reshape(s) for p, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w + b

    bt, t = tokens.shape
    hs = C // NH
    x = wte[tokens] + wpe[:t]
    mask = np.triu(np.ones((t, t), bool), 1)
    for i in range(L):
        qkv = ln(x, ln1w[i], ln1b[i]) @ qkvw[i].T + qkvb[i]
        q, k, v = (a.reshape(bt, t, NH, hs).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, -1))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        att = np.where(mask, -np.inf, att)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(bt, t, C)
        x = x + y @ attw[i].T + attb[i]
        h = ln(x, ln2w[i], ln2b[i]) @ fcw[i].T + fcb[i]
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
        x = x + h @ fcpw[i].T + fcpb[i]
    got = ln(x, lnfw, lnfb) @ wte[:V].T
    d = np.abs(got - want).max()
    assert d < 1e-9, f"numpy llm.c-layout forward differs from HF by {d}"


def write_readme(out: Path, weights: dict) -> None:
    names = "\n".join(f"    {n}  {list(w.shape)}" for n, w in sorted(weights.items()))
    text = f"""# gpt2_tiny: Hugging Face reference fixtures

Tiny random GPT-2 (V={V}, maxT={MAXT}, C={C}, L={L}, NH={NH}, gelu_new, no dropout,
LayerNorm eps 1e-5, eager attention, wte tied to lm_head). After HF's init every parameter
was overwritten with seeded random values (weights N(0,0.08), biases N(0,0.05),
LayerNorm weights 1+N(0,0.1)), so biases and LayerNorm parameters are non-trivial.

Files:

- `config.json`, `model.safetensors`: `GPT2LMHeadModel.save_pretrained` output (fp32).
  Only parameters are stored, under HF names, Conv1D weights in HF's [in, out] layout;
  `lm_head.weight` is not stored (tied to `transformer.wte.weight`):
{names}
- `reference.safetensors`: computed in float64 (`model.double()` from exactly the saved fp32
  weights, eval mode), stored as fp32 except `tokens`/`targets` (I32):
  - `tokens`, `targets` [{B},{T}] seeded random ids in [0,{V})
  - `logits` [{B},{T},{V}], `loss` [1] = `F.cross_entropy` mean over all {B}x{T} positions
  - `grad.<name>` for every parameter (HF name and shape; the tied wte grad includes lm_head's part)
  - `adam_losses` [{STEPS}]: loss before each update of {STEPS} steps of forward, backward,
    `clip_grad_norm_(params, {CLIP})`, `torch.optim.AdamW(lr={LR}, betas=({BETA1},{BETA2}), eps={EPS})`
    with weight_decay={WD} on parameters with dim >= 2 (wte, wpe, Conv1D weights) and 0 on
    biases and LayerNorm parameters
  - `adam_grad_norms` [{STEPS}]: pre-clip global grad norm per step
  - `adam_final.<name>`: parameters after the {STEPS} steps
  - metadata: lr, beta1, beta2, eps, weight_decay, grad_clip, B, T, steps, seed, versions
- `model_v3.bin`: llm.c model file, 256 x int32 header [{LLMC_MAGIC}, 3, maxT={MAXT}, V={V}, L={L},
  NH={NH}, C={C}, Vp={VP}, 0...], then fp32 wte (Vp,C; rows >= V zero), wpe, ln1w, ln1b, qkvw,
  qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb; per-layer
  tensors stacked over layers, matrices in (out, in) layout (HF Conv1D weights transposed).
- `model_v5.bin`: same with header[1]=5 and parameters as bf16 (round-to-nearest-even, uint16).

Made with (offline, deterministic, seed {SEED}):

    tools/setup.sh --fixtures
    HF_HUB_OFFLINE=1 .venv/bin/python tools/make_fixtures.py

Versions: torch {torch.__version__}, transformers {transformers.__version__},
safetensors {safetensors.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]}.
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
