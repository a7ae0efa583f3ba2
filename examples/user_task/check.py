#!/usr/bin/env python3
"""Checker for the arithmetic-expression task (`loop.verifier_cmd = "python3 check.py"`).

Reads JSON Lines {"prompt": "7*3+2=", "sample": "23"} on stdin and writes one score per line on
stdout: 1 when the sample is the expression's value written in decimal, else 0. The expression is
parsed, not evaluated as Python: only single digits and + - * (with the usual precedence) are
accepted, and a prompt outside that grammar is an error (exit status 2, the line named on stderr).
"""
import json
import sys


def value(expr: str) -> int:
    """The value of d(op d)* with op in + - *, * binding tighter."""
    if not expr or len(expr) % 2 == 0:
        raise ValueError(f"not an expression of digits and + - *: {expr!r}")
    terms, term = [], int(expr[0]) if expr[0].isdigit() else None
    if term is None:
        raise ValueError(f"not a digit: {expr[0]!r}")
    for op, d in zip(expr[1::2], expr[2::2]):
        if not d.isdigit() or op not in "+-*":
            raise ValueError(f"not an expression of digits and + - *: {expr!r}")
        if op == "*":
            term *= int(d)
        else:
            terms.append(term)
            term = int(d) if op == "+" else -int(d)
    return sum(terms) + term


def main() -> int:
    for n, line in enumerate(sys.stdin, 1):
        try:
            row = json.loads(line)
            prompt = row["prompt"]
            if not prompt.endswith("="):
                raise ValueError("the prompt does not end with '='")
            want = value(prompt[:-1])
        except (ValueError, KeyError, TypeError) as e:
            print(f"check.py: input line {n}: {e}", file=sys.stderr)
            return 2
        sample = row.get("sample", "").strip()
        print(1 if sample == str(want) else 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
