#!/usr/bin/env python3
"""Sets two `bench --trace` files of one model side by side, op by op.

    bench/compare_traces.py A.trace B.trace [--top N]

Both must trace the same graph (same model, size and batch: the same ops with
the same operand shapes, in the same order; the operands' types may differ,
as f16 weights on one side and f32 on the other). Ops with equal operand
shapes are grouped; each group gets its calls, milliseconds on either side,
B's time over A's, and the rate each side reached: TFLOP/s for matmul,
conv2d and attention, GB/s of operands and result for the rest. Groups are
listed by how much more time B spent on them than A (most first), so that
where B falls behind A is at the top. Nothing is measured here: the traces
come from `bench --trace` runs made side by side (bench/device.sh)."""
import argparse
import math
import sys
from collections import OrderedDict

BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "U8": 1}


def parse_operand(text):
    if text == "-":
        return None
    dtype, shape = text.split(":")
    return dtype, tuple(int(d) for d in shape.split("x"))


def read_trace(path):
    ops = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or " -> " not in fields[2]:
                sys.exit(f"{path}:{n}: not a bench --trace line: {line.strip()!r}")
            srcs, dst = fields[2].split(" -> ")
            operands = [parse_operand(t) for t in srcs.split(" ")] + [parse_operand(dst)]
            ops.append((fields[0], float(fields[1]), operands))
    if not ops:
        sys.exit(f"{path}: no ops traced")
    return ops


def flops(op, operands):
    """Multiply-adds counted twice, for the ops that are mostly that."""
    shapes = [o[1] if o else None for o in operands]
    if op == "matmul":
        x, w, y = shapes[0], shapes[1], shapes[-1]
        return 2 * math.prod(y) * w[-1]
    if op == "conv2d":
        w, y = shapes[1], shapes[-1]
        return 2 * math.prod(y) * math.prod(w[1:])
    if op == "attention":
        q, k = shapes[0], shapes[1]
        return 4 * q[0] * q[1] * k[1] * q[2]
    return 0


def moved_bytes(operands):
    return sum(BYTES.get(o[0], 4) * math.prod(o[1]) for o in operands if o)


def rate(op, operands, ms):
    if ms <= 0:
        return "-"
    f = flops(op, operands)
    if f:
        per_s = f / ms * 1e3
        for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
            if per_s >= scale:
                return f"{per_s / scale:.1f} {unit}"
        return f"{per_s / 1e6:.1f} MFLOP/s"
    return f"{moved_bytes(operands) / ms / 1e6:.0f} GB/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--top", type=int, default=30, help="groups to list (default 30)")
    args = ap.parse_args()
    a, b = read_trace(args.a), read_trace(args.b)
    if len(a) != len(b):
        sys.exit(f"{args.a} has {len(a)} ops and {args.b} {len(b)}: not the same graph")
    groups = OrderedDict()
    totals = OrderedDict()
    for n, ((op, ms_a, ops_a), (op_b, ms_b, ops_b)) in enumerate(zip(a, b), 1):
        shapes_a = [o[1] if o else None for o in ops_a]
        shapes_b = [o[1] if o else None for o in ops_b]
        if op != op_b or shapes_a != shapes_b:
            sys.exit(f"op {n}: {op} {shapes_a} in {args.a}, {op_b} {shapes_b} in {args.b}: not the same graph")
        key = (op, tuple(shapes_a))
        g = groups.setdefault(key, {"calls": 0, "a": 0.0, "b": 0.0, "ops_a": ops_a, "ops_b": ops_b})
        g["calls"] += 1
        g["a"] += ms_a
        g["b"] += ms_b
        t = totals.setdefault(op, [0, 0.0, 0.0])
        t[0] += 1
        t[1] += ms_a
        t[2] += ms_b

    def shape_text(shapes):
        return " ".join("x".join(map(str, s)) if s else "-" for s in shapes[:-1]) + " -> " + "x".join(
            map(str, shapes[-1]))

    print(f"A: {args.a}\nB: {args.b}\n")
    print(f"{'op':<18} {'calls':>5} {'A ms':>8} {'B ms':>8} {'B/A':>6} {'B-A ms':>7}  {'A rate':>16} {'B rate':>16}  operands")
    ranked = sorted(groups.items(), key=lambda kv: kv[1]["a"] - kv[1]["b"])
    for (op, shapes), g in ranked[: args.top]:
        ratio = g["b"] / g["a"] if g["a"] > 0 else float("inf")
        per_a, per_b = g["a"] / g["calls"], g["b"] / g["calls"]
        print(f"{op:<18} {g['calls']:>5} {g['a']:>8.3f} {g['b']:>8.3f} {ratio:>6.2f} {g['b'] - g['a']:>7.3f}  "
              f"{rate(op, g['ops_a'], per_a):>16} {rate(op, g['ops_b'], per_b):>16}  {shape_text(shapes)}")
    if len(ranked) > args.top:
        print(f"... and {len(ranked) - args.top} more groups")
    print(f"\n{'op':<18} {'calls':>5} {'A ms':>8} {'B ms':>8} {'B/A':>6}")
    sum_a = sum_b = 0.0
    for op, (calls, ms_a, ms_b) in sorted(totals.items(), key=lambda kv: kv[1][1] - kv[1][2]):
        print(f"{op:<18} {calls:>5} {ms_a:>8.3f} {ms_b:>8.3f} {ms_b / ms_a if ms_a > 0 else float('inf'):>6.2f}")
        sum_a += ms_a
        sum_b += ms_b
    print(f"{'all':<18} {len(a):>5} {sum_a:>8.3f} {sum_b:>8.3f} {sum_b / sum_a if sum_a > 0 else float('inf'):>6.2f}")


if __name__ == "__main__":
    main()
