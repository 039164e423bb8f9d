"""Matches two sets of boxes per image (JSON lines of {"image", "boxes": [[x1, y1, x2, y2, score, class]]}):
every reference box with score >= THR must have a box of the same class at IoU >= 0.99 with |dscore| <= 1e-3,
and no box of ours with score >= THR + 1e-3 may lack such a reference (the margin keeps boxes that sit on
the threshold from counting). Prints the counts and exits non-zero on any mismatch.

    python3 tools/compare/match_boxes.py REFERENCE.jsonl OURS.jsonl [THR]
"""
import json
import sys


def iou(a, b):
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    i = w * h
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)


def matched(b, pool):
    return any(p[5] == b[5] and abs(p[4] - b[4]) <= 1e-3 and iou(p, b) >= 0.99 for p in pool)


def main():
    ref = {json.loads(l)["image"]: json.loads(l)["boxes"] for l in open(sys.argv[1]) if l.strip()}
    ours = {json.loads(l)["image"]: json.loads(l)["boxes"] for l in open(sys.argv[2]) if l.strip()}
    thr = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    n_ref = n_ok = n_extra = worst = 0
    for img, rb in ref.items():
        ob = ours.get(img, [])
        for b in rb:
            if b[4] >= thr:
                n_ref += 1
                n_ok += matched(b, ob)
        for b in ob:
            if b[4] >= thr + 1e-3 and not matched(b, rb):
                n_extra += 1
        for b in rb:
            best = max((abs(p[4] - b[4]) for p in ob if p[5] == b[5] and iou(p, b) >= 0.99), default=None)
            if best is not None and best > worst:
                worst = best
    print(json.dumps({"images": len(ref), "reference_boxes": n_ref, "matched": n_ok, "unmatched": n_ref - n_ok, "extra": n_extra,
                      "worst_abs_dscore": worst}))
    sys.exit(0 if n_ok == n_ref and n_extra == 0 else 1)


if __name__ == "__main__":
    main()
