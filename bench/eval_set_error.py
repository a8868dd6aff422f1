"""How big must the hidden eval be? The gain of one checkpoint over another,
measured on disjoint chunks of the hidden split: the spread of the gain across
chunks of a size is what a different eval set of that size would have changed.

    .venv/bin/python bench/eval_set_error.py --config tiny --data .karpa/data/tiny \
        --king runs/king/checkpoints/step-384.safetensors \
        --challenger runs/pr/checkpoints/step-768.safetensors --challenger-set batch_rows=8

Each checkpoint is loaded into bench/train_eager.py's mirror of the recipe (with
its recipe.toml table, overridden by --king-set/--challenger-set for changed
hyperparameters). bpb is karpa-train eval's: nats over targets that stand for
bytes / (ln 2 · their UTF-8 bytes); the whole-split figures match it.
"""

import argparse
import json
import math
import pathlib
import statistics
import struct
import tomllib

import numpy as np
import torch
import torch.nn.functional as F

import train_eager

ROOT = pathlib.Path(__file__).resolve().parent.parent
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    raw = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name != "__metadata__":
            start, end = t["data_offsets"]
            data = np.frombuffer(raw[8 + n + start : 8 + n + end], dtype=DTYPES[t["dtype"]])
            out[name] = torch.from_numpy(data.reshape(t["shape"]).copy())
    return out


def model(config, vocab, seq, path, overrides):
    hp = tomllib.loads((ROOT / "recipe/recipe.toml").read_text())[config]
    for kv in overrides:
        key, value = kv.split("=", 1)
        hp[key] = tomllib.loads(f"v = {value}")["v"]
    gpt = train_eager.Gpt(hp, vocab, seq)
    state = {}
    for name, t in load_safetensors(path).items():
        if name.startswith("model."):
            name = name.removeprefix("model.").replace(".attn.", ".")
            state[name.removesuffix(".weight") if "norm" in name else name] = t
    gpt.load_state_dict(state, strict=True)
    return gpt.eval()


def token_bytes(tokenizer):
    """UTF-8 bytes each token stands for (byte-level BPE: one symbol per byte); specials 0."""
    special = {t["id"] for t in tokenizer["added_tokens"]}
    table = torch.zeros(len(tokenizer["model"]["vocab"]) + len(special), dtype=torch.int64)
    for symbol, i in tokenizer["model"]["vocab"].items():
        table[i] = 0 if i in special else len(symbol)
    return table


def per_window(gpt, tokens, seq, table, vocab):
    """Nats over counted targets and their bytes, for every whole window of the split."""
    n = (len(tokens) - 1) // seq
    nats, nbytes = [], []
    with torch.no_grad():
        for s in range(0, n, 64):
            rows = torch.stack([tokens[i * seq : i * seq + seq + 1] for i in range(s, min(s + 64, n))])
            x, y = rows[:, :-1], rows[:, 1:]
            loss = F.cross_entropy(gpt(x).reshape(-1, vocab), y.reshape(-1), reduction="none").view(y.shape)
            b = table[y]
            nats.append((loss.double() * (b > 0)).sum(1))
            nbytes.append(b.sum(1))
    return torch.cat(nats).numpy(), torch.cat(nbytes).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True, type=pathlib.Path, help="the folder holding public/ and hidden/")
    ap.add_argument("--king", required=True)
    ap.add_argument("--challenger", required=True)
    ap.add_argument("--king-set", action="append", default=[])
    ap.add_argument("--challenger-set", action="append", default=[])
    args = ap.parse_args()
    cfg = tomllib.loads((ROOT / "trainer/configs" / f"{args.config}.toml").read_text())
    vocab, seq = cfg["data"]["vocab_size"], cfg["seq_len"]
    table = token_bytes(json.loads((args.data / "public/tokenizer.json").read_text()))
    manifest = json.loads((args.data / "hidden/hidden-manifest.json").read_text())
    dtype = np.uint16 if manifest["dtype"] == "u16" else np.uint32
    tokens = np.concatenate([np.fromfile(args.data / "hidden" / s["path"], dtype=dtype) for s in manifest["hidden"]["shards"]])
    tokens = torch.from_numpy(tokens.astype(np.int64))

    runs = {}
    for name, path, sets in [("king", args.king, args.king_set), ("challenger", args.challenger, args.challenger_set)]:
        runs[name] = per_window(model(args.config, vocab, seq, path, sets), tokens, seq, table, vocab)
    windows = len(runs["king"][0])

    def bpb(name, a, b):
        nats, nbytes = runs[name]
        return nats[a:b].sum() / (math.log(2) * nbytes[a:b].sum())

    print(f"hidden split: {windows} windows of {seq} tokens; eval_tokens = {cfg['eval_tokens']}")
    for name in runs:
        print(f"{name:<10} bpb on the first eval_tokens {bpb(name, 0, cfg['eval_tokens'] // seq):.6f}, whole split {bpb(name, 0, windows):.6f}")
    print(f"\n{'eval tokens':>12} {'chunks':>7} {'gain: mean':>11} {'sd':>8}")
    size = 16
    while size * 2 <= windows:
        gains = [bpb("king", a, a + size) - bpb("challenger", a, a + size) for a in range(0, windows - size + 1, size)]
        print(f"{size * seq:>12,} {len(gains):>7} {statistics.fmean(gains):>+11.4f} {statistics.stdev(gains):>8.4f}")
        size *= 2


if __name__ == "__main__":
    main()
