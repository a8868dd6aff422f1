"""The canonical recipe's GPT and AdamW step, written in plain PyTorch eager.

`cargo xtask bench-trainer` runs this beside `karpa-train bench` on the same
config, data and step count, to compare training throughput. It mirrors
recipe/src/model.rs and recipe/src/optim.rs operation for operation, and reads
the same hyperparameters (recipe/recipe.toml) and config (trainer/configs/).
"""

import argparse
import json
import math
import pathlib
import time
import tomllib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Rope:
    def __init__(self, head_dim, seq_len):
        half = head_dim // 2
        inv_freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-2.0 * math.log(10000.0) / head_dim))
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        self.cos = angles.cos().view(1, 1, seq_len, half)
        self.sin = angles.sin().view(1, 1, seq_len, half)

    def apply(self, x):
        t, half = x.shape[2], x.shape[3] // 2
        cos, sin = self.cos[:, :, :t], self.sin[:, :, :t]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=3)


class Block(nn.Module):
    def __init__(self, hp, std, proj_std):
        super().__init__()
        d = hp["d_model"]
        self.n_head = hp["n_head"]
        self.norm1 = nn.Parameter(torch.ones(d))
        self.norm2 = nn.Parameter(torch.ones(d))
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.fc = nn.Linear(d, hp["mlp_ratio"] * d, bias=False)
        self.proj = nn.Linear(hp["mlp_ratio"] * d, d, bias=False)
        for w, s in [(self.qkv, std), (self.out, proj_std), (self.fc, std), (self.proj, proj_std)]:
            nn.init.normal_(w.weight, 0.0, s)

    def forward(self, x, rope):
        b, t, d = x.shape
        h = F.rms_norm(x, (d,), self.norm1, 1e-6)
        q, k, v = self.qkv(h).chunk(3, dim=2)
        heads = lambda z: z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(rope.apply(heads(q)), rope.apply(heads(k)), heads(v), is_causal=True)
        x = x + self.out(y.transpose(1, 2).contiguous().view(b, t, d))
        h = F.gelu(self.fc(F.rms_norm(x, (d,), self.norm2, 1e-6)), approximate="tanh")
        return x + self.proj(h)


class Gpt(nn.Module):
    def __init__(self, hp, vocab, seq_len):
        super().__init__()
        std, proj_std = hp["init_std"], hp["init_std"] / math.sqrt(2 * hp["n_layer"])
        self.wte = nn.Embedding(vocab, hp["d_model"])
        nn.init.normal_(self.wte.weight, 0.0, std)
        self.blocks = nn.ModuleList([Block(hp, std, proj_std) for _ in range(hp["n_layer"])])
        self.norm_f = nn.Parameter(torch.ones(hp["d_model"]))
        self.head = None if hp["tie_embeddings"] else nn.Linear(hp["d_model"], vocab, bias=False)
        if self.head is not None:
            nn.init.normal_(self.head.weight, 0.0, std)
        self.rope = Rope(hp["d_model"] // hp["n_head"], seq_len)

    def forward(self, idx):
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.rope)
        x = F.rms_norm(x, (x.shape[-1],), self.norm_f, 1e-6)
        return self.head(x) if self.head is not None else x @ self.wte.weight.T


def lr_at(hp, tokens_seen, tokens_per_step, budget):
    progress, after = tokens_seen / budget, (tokens_seen + tokens_per_step) / budget
    if hp["warmup_frac"] > 0 and progress < hp["warmup_frac"]:
        return hp["lr"] * min(after / hp["warmup_frac"], 1.0)
    decay = min((progress - hp["warmup_frac"]) / max(1.0 - hp["warmup_frac"], 1e-9), 1.0)
    return hp["lr"] * (hp["min_lr_frac"] + (1 - hp["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * decay)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True, type=pathlib.Path)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    cfg = tomllib.loads((ROOT / "trainer/configs" / f"{args.config}.toml").read_text())
    hp = tomllib.loads((ROOT / "recipe/recipe.toml").read_text())[args.config]
    vocab, seq, budget = cfg["data"]["vocab_size"], cfg["seq_len"], cfg["token_budget"]
    manifest = json.loads((args.data / "manifest.json").read_text())
    dtype = np.uint16 if manifest["dtype"] == "u16" else np.uint32
    tokens = np.concatenate([np.fromfile(args.data / s["path"], dtype=dtype) for s in manifest["train"]["shards"]])
    tokens = torch.from_numpy(tokens.astype(np.int64))

    torch.manual_seed(cfg["seed"])
    model = Gpt(hp, vocab, seq)
    params = sorted(model.named_parameters())
    decay = [p for _, p in params if p.dim() >= 2]
    no_decay = [p for _, p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
    )
    rows, per_step = hp["batch_rows"], hp["batch_rows"] * seq
    n_windows = (len(tokens) - 1) // seq
    gen = torch.Generator().manual_seed(cfg["seed"])
    warmup, tokens_seen, loss = 3, 0, float("nan")
    for step in range(warmup + args.steps):
        if step == warmup:
            start = time.perf_counter()
        starts = torch.randint(n_windows, (rows,), generator=gen) * seq
        batch = torch.stack([tokens[s : s + seq + 1] for s in starts.tolist()])
        x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
        for g in opt.param_groups:
            g["lr"] = lr_at(hp, tokens_seen % budget, per_step, budget)
        logits = model(x)
        loss_t = F.cross_entropy(logits.float().view(-1, vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
        opt.step()
        loss = loss_t.item()
        tokens_seen += per_step
    secs = time.perf_counter() - start
    timed = args.steps * per_step
    print(json.dumps({
        "steps": args.steps, "tokens": timed, "tokens_per_s": timed / secs,
        "ms_per_step": secs * 1e3 / args.steps, "final_loss": loss, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
