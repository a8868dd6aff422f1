"""What the causality check's pairs catch, on a real checkpoint's hidden score.

Usage: python bench/causality_power.py NATS_F32 EVAL_JSON SIGMA [PAIRS ...]

NATS_F32 is `karpa-train eval --split hidden --nats-out` of the king, EVAL_JSON
that command's stdout, SIGMA the king's noise-floor sigma in bpb. For gains of
0.5, 1 and 2 sigma it prints the least fraction of scored positions a cheat must
touch to buy the gain (saving the whole loss of the dearest positions first: the
most concentrated cheat there is) and the probability that K uniform secret
pairs see it, 1 - (1 - f)^K. Special tokens count as bytes here (the file holds
every target's nats), which makes the cheat look a little cheaper than it is.
"""
import json
import math
import struct
import sys


def main():
    nats_file, eval_json, sigma = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pairs = [int(k) for k in sys.argv[4:]] or [192, 192 + 2 * 1536, 192 + 3 * 1536]
    raw = open(nats_file, "rb").read()
    nats = sorted(struct.unpack(f"<{len(raw) // 4}f", raw), reverse=True)
    ev = json.load(open(eval_json))
    total_bytes = ev["bytes"]
    print(f"{len(nats)} scored tokens, {total_bytes} bytes, hidden bpb {ev['val_bpb']:.4f}, sigma {sigma}")
    print(f"largest per-token loss {nats[0]:.2f} nats; mean {sum(nats) / len(nats):.2f}")
    header = " | ".join(f"power, K={k}" for k in pairs)
    print(f"| gain | bpb | least fraction touched | {header} |")
    print("| --- | ---: | ---: |" + " ---: |" * len(pairs))
    for mult in (0.5, 1.0, 2.0):
        need = mult * sigma * math.log(2) * total_bytes
        saved, count = 0.0, 0
        for n in nats:
            saved += n
            count += 1
            if saved >= need:
                break
        f = count / len(nats)
        powers = " | ".join(f"{100 * (1 - (1 - f) ** k):.2f} %" for k in pairs)
        print(f"| {mult} sigma | {mult * sigma:.4f} | {100 * f:.2f} % ({count} tokens) | {powers} |")


if __name__ == "__main__":
    main()
