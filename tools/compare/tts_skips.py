#!/usr/bin/python3
"""Words a synthesiser skips or repeats, as an independent recogniser hears them (issue 20's second test of
attention): a reference word pocketsphinx drops, or says twice, for our voice where it does not for the
teacher voice on the same sentence.

    tools/compare/tts_skips.py TEACHER.json OURS.json

Both files come from `asr_baseline.py pocketsphinx LIST.tsv --json OUT` on the same sentences in the same
order. A recogniser also drops words it merely misheard, so this counts more than the voice skips: it is an
upper bound, listed sentence by sentence for listening."""
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


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    teacher = [json.loads(line) for line in open(sys.argv[1])]
    ours = [json.loads(line) for line in open(sys.argv[2])]
    if len(teacher) != len(ours) or any(t["ref"] != o["ref"] for t, o in zip(teacher, ours)):
        sys.exit("the two files are not the same sentences in the same order")
    skips = repeats = 0
    for t, o in zip(teacher, ours):
        ref = o["ref"].split()
        td, tr = dropped_and_doubled(ref, t["hyp"].split())
        od, orep = dropped_and_doubled(ref, o["hyp"].split())
        new_drops, new_repeats = sorted(od - td), sorted(orep - tr)
        skips += bool(new_drops)
        repeats += bool(new_repeats)
        if new_drops or new_repeats:
            what = [f"dropped '{ref[k]}'" for k in new_drops] + [f"doubled '{ref[k]}'" for k in new_repeats]
            print(f"{o['file']}: {', '.join(what)}")
    print(f"{len(ours)} sentences: a word dropped for ours but not for the teacher in {skips}, "
          f"a word doubled in {repeats}")


if __name__ == "__main__":
    main()
