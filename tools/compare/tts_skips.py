#!/usr/bin/python3
"""Words a synthesiser skips or repeats, as an independent recogniser hears them (issue 20's second test of
attention): a reference word pocketsphinx drops, or says twice, for our voice where it does not for the
teacher voice on the same sentence.

    tools/compare/tts_skips.py TEACHER.json OURS.json [TEACHER2.json OURS2.json]

Both files come from `asr_baseline.py pocketsphinx LIST.tsv --json OUT` (or `e2e eval asr --json`) on the
same sentences in the same order. A recogniser also drops words it merely misheard, so this counts more
than the voice skips: it is an upper bound, listed sentence by sentence for listening. Given a second
recogniser's pair, it also counts the words both recognisers drop (or double) for ours only: two
recognisers rarely mishear the same word the same way, so these are the likelier skips."""
import json
import sys


def dropped_and_doubled(ref, hyp):
    """Reference positions deleted in the cheapest alignment of hyp to ref, and positions said twice (the word
    right after it in hyp, inserted, is the same word)."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]), d[i - 1][j] + 1, d[i][j - 1] + 1)
    dropped, doubled = set(), set()
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            dropped.add(i - 1)
            i -= 1
        else:
            # hyp[j - 1] inserted: a repeat when it equals the reference word it follows or precedes
            if (i > 0 and hyp[j - 1] == ref[i - 1]) or (i < n and hyp[j - 1] == ref[i]):
                doubled.add(i - 1 if i > 0 and hyp[j - 1] == ref[i - 1] else i)
            j -= 1
    return dropped, doubled


def ours_only(teacher_path, ours_path):
    """Per sentence: (file, reference words, positions dropped for ours only, positions doubled for ours only)."""
    teacher = [json.loads(line) for line in open(teacher_path)]
    ours = [json.loads(line) for line in open(ours_path)]
    if len(teacher) != len(ours) or any(t["ref"] != o["ref"] for t, o in zip(teacher, ours)):
        sys.exit(f"{teacher_path} and {ours_path} are not the same sentences in the same order")
    rows = []
    for t, o in zip(teacher, ours):
        ref = o["ref"].split()
        td, tr = dropped_and_doubled(ref, t["hyp"].split())
        od, orep = dropped_and_doubled(ref, o["hyp"].split())
        rows.append((o["file"], ref, od - td, orep - tr))
    return rows


def report(rows, prefix=""):
    for file, ref, drops, repeats in rows:
        if drops or repeats:
            what = [f"dropped '{ref[k]}'" for k in sorted(drops)] + [f"doubled '{ref[k]}'" for k in sorted(repeats)]
            print(f"{prefix}{file}: {', '.join(what)}")
    print(f"{prefix}{len(rows)} sentences: a word dropped for ours but not for the teacher in "
          f"{sum(bool(r[2]) for r in rows)}, a word doubled in {sum(bool(r[3]) for r in rows)}")


def main():
    if len(sys.argv) not in (3, 5):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    rows = ours_only(sys.argv[1], sys.argv[2])
    report(rows)
    if len(sys.argv) == 5:
        other = ours_only(sys.argv[3], sys.argv[4])
        if len(other) != len(rows) or any(a[1] != b[1] for a, b in zip(rows, other)):
            sys.exit("the second recogniser's files are not the same sentences")
        report([(a[0], a[1], a[2] & b[2], a[3] & b[3]) for a, b in zip(rows, other)], "both recognisers: ")


if __name__ == "__main__":
    main()
