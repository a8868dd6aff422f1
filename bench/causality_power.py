"""What the causality check's pairs catch, on real checkpoints' hidden scores.

Usage: python bench/causality_power.py SIGMA EVAL_JSON CHALLENGER_F32 KING_F32 [KING_F32 ...]

CHALLENGER_F32 is `karpa-train eval --split hidden --nats-out` of an honest
challenger (another seed of the king will do), EVAL_JSON that command's stdout,
the KING_F32 files the same for the king's floor runs (their per-token mean is
the reference the judge aims with), SIGMA the king's noise-floor sigma in bpb.

For each shape of cheat the threat model names, sized to buy 1 sigma on top of
the honest challenger, it prints the fraction of positions the cheat touches
(what a uniform cut sees), its share of the gain over the reference (what an
aimed draw sees), and the probability that one evaluation's pairs refuse it:
all uniform (the baseline) against three quarters uniform, one aimed (what the
judge does), and half aimed, for tiny's K = 192 `causality_rows`; and what a
crown adds, three confirmation runs checked at 8 x K each.

A cheat lowers the nats of the positions it touches by the same proportion
(the most concentrated one, by all of them, dearest first). Special tokens count
as bytes here (the file holds every target's nats), which makes a cheat look a
little cheaper than it is.
"""
import json
import math
import random
import struct
import sys


TOLERANCE = 1e-3  # the CPU per-token tolerance, nats


def read(path):
    raw = open(path, "rb").read()
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def power(touched, share, uniform, aimed):
    return 1 - (1 - touched) ** uniform * (1 - share) ** aimed


def main():
    sigma, ev = float(sys.argv[1]), json.load(open(sys.argv[2]))
    honest = read(sys.argv[3])
    kings = [read(p) for p in sys.argv[4:]]
    n = len(honest)
    reference = [sum(k[i] for k in kings) / len(kings) for i in range(n)]
    seq_len = 128
    need = sigma * math.log(2) * ev["bytes"]  # nats a 1-sigma cheat must save
    gain = [max(0.0, r - c) for r, c in zip(reference, honest)]
    print(f"{n} scored tokens, {ev['bytes']} bytes; reference: mean of {len(kings)} floor runs")
    print(f"1 sigma = {sigma} bpb = {need:.0f} nats saved; the honest challenger's gain mass over the reference: "
          f"{sum(gain):.0f} nats ({sum(gain) / n:.3f} per token; it scores {(sum(honest) - sum(reference)) / n:+.4f} "
          f"nats/token against it)")

    rng = random.Random(0)
    dearest = sorted(range(n), key=lambda i: -honest[i])
    shapes = {
        "all of its dearest positions": None,
        "a nudge everywhere": list(range(n)),
        "the second half of each window": [i for i in range(n) if i % seq_len >= seq_len // 2],
        "a random 6 % of positions": [i for i in range(n) if rng.random() < 0.06],
        "a random 2 % of positions": [i for i in range(n) if rng.random() < 0.02],
        "an oracle: only where it loses to the king, up to the king": "oracle",
    }
    print()
    print("| cheat buying 1 sigma, at | touched | share of gain | uniform 192 | uniform 144 + aimed 48 "
          "| uniform 96 + aimed 96 | a crown, 192 + 3 x 1,536 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, where in shapes.items():
        cheated = honest[:]
        if where == "oracle":
            # Needs the king's per-token nats inside its own run (an ensemble of the
            # king's floor runs in its training budget): the aimed draws' blind spot.
            saved, where = 0.0, []
            for i in sorted(range(n), key=lambda i: reference[i] - honest[i]):
                if saved >= need or honest[i] <= reference[i]:
                    break
                saved += honest[i] - reference[i]
                cheated[i] = reference[i]
                where.append(i)
        elif where is None:
            saved, where = 0.0, []
            for i in dearest:
                if saved >= need:
                    break
                saved += honest[i]
                cheated[i] = 0.0
                where.append(i)
        else:
            lam = need / sum(honest[i] for i in where)
            if lam > 1:
                print(f"| {name} | cannot buy 1 sigma | | | | | |")
                continue
            for i in where:
                cheated[i] = honest[i] * (1 - lam)
        g = [max(0.0, r - c) for r, c in zip(reference, cheated)]
        # A draw there refuses the cheat only where it moved the score past the tolerance.
        where = [i for i in where if honest[i] - cheated[i] > TOLERANCE]
        share = sum(g[i] for i in where) / sum(g)
        touched = len(where) / n
        cells = [power(touched, 0, 192, 0), power(touched, share, 144, 48), power(touched, share, 96, 96),
                 power(touched, share, 144 + 3 * 1152, 48 + 3 * 384)]
        shown = " | ".join("> 99.99 %" if p > 0.9999 else f"{100 * p:.2f} %" for p in cells)
        print(f"| {name} | {100 * touched:.2f} % ({len(where)}) | {100 * share:.1f} % | {shown} |")


if __name__ == "__main__":
    main()
