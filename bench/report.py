#!/usr/bin/env python3
"""Turns bench/run.sh's JSON lines into a Markdown table: times (best of the
rounds, each a median over about a second), nncore/PyTorch ratio (< 1 means
nncore is faster) and achieved GFLOP/s against the measured peak."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = next(r for r in rows if r["case"] == "peak_per_core")
res = {}
fastest = {}  # the fastest single run over all rounds, where the side reports it
for r in rows:
    if "impl" in r:
        key = (r["coretype"], r["threads"], r["case"], r["impl"])
        if key not in res or r["ms"] < res[key]["ms"]:  # best of the rounds
            res[key] = r
        if "min_ms" in r and (key not in fastest or r["min_ms"] < fastest[key]):
            fastest[key] = r["min_ms"]
# the widest vector unit this CPU has sets the peak
isa, top = ("AVX-512", peak["avx512_gflops"]) if peak.get("avx512_gflops") else ("AVX2", peak["avx2_gflops"])
print(f"Peak per core, measured by an FMA loop (12 independent chains): AVX2 {peak['avx2_gflops']} GFLOP/s, "
      f"AVX-512 {peak['avx512_gflops'] or 'not on this CPU'}{' GFLOP/s' if peak['avx512_gflops'] else ''}.\n")
for coretype in ("Haswell", "auto"):
    if not any(k[0] == coretype for k in res):
        continue
    note = "OPENBLAS_CORETYPE=Haswell (machine default: OpenBLAS uses AVX2)" if coretype == "Haswell" \
        else "OPENBLAS_CORETYPE unset (OpenBLAS picks its kernel for this CPU)"
    print(f"### {note}\n")
    print(f"| case | threads | nncore ms | PyTorch ms | ratio | fastest run: nncore / PyTorch ms | ratio | nncore GFLOP/s | % of {isa} peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (ct, t, case, impl), r in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if ct != coretype or impl != "nncore":
            continue
        tr = res.get((ct, t, case, "torch"))
        gfs = r["gflop"] / (r["ms"] / 1e3)
        pk = top * t
        ratio = f"{r['ms'] / tr['ms']:.2f}" if tr else "n/a"
        fn, ft = fastest.get((ct, t, case, "nncore")), fastest.get((ct, t, case, "torch"))
        fcol = f"{fn:.2f} / {ft:.2f} | {fn / ft:.2f}" if fn and ft else "n/a | n/a"
        print(f"| {case} | {t} | {r['ms']:.2f} | {tr['ms'] if tr else float('nan'):.2f} | {ratio} | {fcol} | {gfs:.0f} | {100 * gfs / pk:.0f}% |")
    print()
