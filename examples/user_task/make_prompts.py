#!/usr/bin/env python3
"""Arithmetic-expression prompts for a user task (`loop.task = "file"`).

Writes JSON Lines, one prompt per line: {"prompt": "7*3+2=", "difficulty": 2}, where difficulty is
the number of operators. No answers: check.py judges what the model writes. With --answers the
file also carries them ({"answer": "23"}), which is what `ouro prepare --task file` needs to make
training documents.

    python3 make_prompts.py --count 300 --max-ops 3 --seed 1 --out prompts.jsonl
"""
import argparse
import json
import random


def expression(rng: random.Random, ops: int) -> str:
    text = str(rng.randint(0, 9))
    for _ in range(ops):
        text += rng.choice("+-*") + str(rng.randint(0, 9))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=300, help="prompts per difficulty")
    ap.add_argument("--max-ops", type=int, default=3, help="difficulties 1..max-ops (operators per expression)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--answers", action="store_true", help="include each prompt's answer")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        for ops in range(1, args.max_ops + 1):
            for _ in range(args.count):
                expr = expression(rng, ops)
                row = {"prompt": expr + "=", "difficulty": ops}
                if args.answers:
                    row["answer"] = str(eval(expr, {"__builtins__": {}}))  # digits and + - * only
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
