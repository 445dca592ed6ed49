#!/usr/bin/env python3
"""Fit the content router's weights on labelled prompts; print its config.

Input: JSON Lines, one prompt per line:
    {"prompt": "the last user turn", "system": "optional system prompt", "hard": true}

Output (stdout): the team config the policy reads (`strong`, `cheap`,
`threshold`, `model`), to set with
    PUT /admin/v1/teams/TEAM/policy-config
Training accuracy and log-loss go to stderr.

The features are the policy's (src/lib.rs), computed here the way the
gateway computes its content signals:
  - tokens = UTF-8 bytes / 4 + 4 per message; code blocks = ``` fences / 2;
    digits and maths = their shares of all characters;
  - dense = [ln(1 + tokens) / 10, min(code, 4) / 4, 10 * maths, 10 * digits,
    min(turns, 10) / 10, min(tools, 10) / 10, min(images, 4) / 4];
  - words = runs of letters and digits in the lowercased last user turn;
    n-grams = every word and every pair of neighbours joined by one space,
    each hashed with 32-bit FNV-1a into `--buckets`; their weights are summed
    and divided by the square root of their number.
Logistic regression, L2-regularised, fitted by full-batch gradient descent
(deterministic: the same file gives the same config). Standard library only.
"""

import argparse
import json
import math
import sys

MATHS = set("+-*/=^<>%≤≥≠≈±×÷∑∏∫√∞π∂∆∇∈∀∃")
DENSE = ["length", "code", "maths", "digits", "turns", "tools", "images"]


def fnv1a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def words(text: str):
    out, cur = [], []
    for ch in text.lower():
        if ch.isalnum():
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def features(example, buckets):
    prompt = example["prompt"]
    system = example.get("system")
    texts = [prompt] + ([system] if system else [])
    tokens = sum(len(t.encode("utf-8")) for t in texts) // 4 + 4 * len(texts)
    chars = sum(len(t) for t in texts)
    digits = sum(c.isascii() and c.isdigit() for t in texts for c in t)
    maths = sum(c in MATHS for t in texts for c in t)
    fences = sum(t.count("```") for t in texts)
    dense = [
        math.log(1 + tokens) / 10,
        min(fences // 2, 4) / 4,
        10 * (maths / chars if chars else 0.0),
        10 * (digits / chars if chars else 0.0),
        min(1, 10) / 10,
        min(example.get("tools", 0), 10) / 10,
        min(example.get("images", 0), 4) / 4,
    ]
    ws = words(prompt)
    grams = []
    for i, w in enumerate(ws):
        grams.append(fnv1a(w.encode("utf-8")) % buckets)
        if i + 1 < len(ws):
            grams.append(fnv1a((w + " " + ws[i + 1]).encode("utf-8")) % buckets)
    counts = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    scale = 1 / math.sqrt(max(1, len(grams)))
    return dense, {g: c * scale for g, c in counts.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="labelled prompts (JSON Lines)")
    ap.add_argument("--strong", default="gpt-5", help="comma-separated model slugs for hard prompts")
    ap.add_argument("--cheap", default="gpt-5-mini", help="comma-separated model slugs for easy prompts")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--buckets", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--l2", type=float, default=0.001)
    args = ap.parse_args()

    examples = []
    with open(args.data, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                ex = json.loads(line)
                if not isinstance(ex.get("prompt"), str) or not isinstance(ex.get("hard"), bool):
                    sys.exit(f"{args.data}:{n}: needs a string `prompt` and a boolean `hard`")
                examples.append((features(ex, args.buckets), 1.0 if ex["hard"] else 0.0))
    if not examples:
        sys.exit(f"{args.data}: no examples")

    bias, dense, grams = 0.0, [0.0] * len(DENSE), {}
    m = len(examples)
    for _ in range(args.epochs):
        gb, gd, gg = 0.0, [0.0] * len(DENSE), {}
        for (x, sparse), y in examples:
            z = bias + sum(w * v for w, v in zip(dense, x)) + sum(grams.get(g, 0.0) * v for g, v in sparse.items())
            err = 1 / (1 + math.exp(-z)) - y
            gb += err
            for k, v in enumerate(x):
                gd[k] += err * v
            for g, v in sparse.items():
                gg[g] = gg.get(g, 0.0) + err * v
        bias -= args.rate * gb / m
        for k in range(len(DENSE)):
            dense[k] -= args.rate * (gd[k] / m + args.l2 * dense[k])
        for g, v in gg.items():
            grams[g] = grams.get(g, 0.0) - args.rate * (v / m + args.l2 * grams.get(g, 0.0))

    right, loss = 0, 0.0
    for (x, sparse), y in examples:
        z = bias + sum(w * v for w, v in zip(dense, x)) + sum(grams.get(g, 0.0) * v for g, v in sparse.items())
        p = 1 / (1 + math.exp(-z))
        right += (p >= args.threshold) == (y == 1.0)
        loss -= math.log(max(p if y else 1 - p, 1e-12))
    print(f"{m} examples: training accuracy {right / m:.2f}, log-loss {loss / m:.3f}", file=sys.stderr)

    config = {
        "strong": [s for s in args.strong.split(",") if s],
        "cheap": [s for s in args.cheap.split(",") if s],
        "threshold": args.threshold,
        "model": {
            "bias": round(bias, 6),
            "dense": {name: round(w, 6) for name, w in zip(DENSE, dense)},
            "buckets": args.buckets,
            "ngrams": {str(g): round(w, 6) for g, w in sorted(grams.items()) if abs(w) >= 1e-6},
        },
    }
    json.dump(config, sys.stdout, indent=1, sort_keys=False)
    print()


if __name__ == "__main__":
    main()
