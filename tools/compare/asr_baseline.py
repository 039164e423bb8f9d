#!/usr/bin/python3
"""Speech recognition baselines beside e2easr, on the same files (never at run time).

    tools/compare/asr_baseline.py real OUTDIR
        writes OUTDIR/real.tsv: the recorded sentences of Debian's pocketsphinx-testdata with their
        transcripts (LibriVox read speech, card-game utterances, a command, a digit string); eval-only
    tools/compare/asr_baseline.py pocketsphinx LIST.tsv [--digits] [--json OUT]
        Debian's pocketsphinx 0.8 (en-us acoustic model, generic LM, or a digit JSGF grammar) on every
        file of a list (path, group, transcript), scored per group with e2e's normalisation

Python's standard library, sox (rate conversion to pocketsphinx's 16 kHz) and pocketsphinx_continuous."""
import json
import os
import re
import subprocess
import sys
import tempfile
import wave

TESTDATA = "/usr/share/pocketsphinx/test/data"
DIGITS_JSGF = ("#JSGF V1.0;\ngrammar digits;\n"
               "public <digits> = ( zero | oh | one | two | three | four | five | six | seven | eight | nine )+ ;\n")


def normalise(s):
    """The same rule as e2e_asr_normalize_text: lower-case letters, apostrophes inside words, single spaces."""
    s = s.lower()
    s = re.sub(r"(?<=[a-z])'(?=[a-z])", "\x00", s)
    s = re.sub(r"[^a-z\x00]+", " ", s).replace("\x00", "'")
    return " ".join(s.split())


def edits(a, b):
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diag, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            up = row[j]
            row[j] = min(diag + (a[i - 1] != b[j - 1]), up + 1, row[j - 1] + 1)
            diag = up
    return row[len(b)]


def real(out):
    os.makedirs(os.path.join(out, "real"), exist_ok=True)
    rows = []
    for sub, trans in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for line in open(os.path.join(TESTDATA, sub, trans)):
            m = re.match(r"<s>(.*)</s>\s*\((.*)\)", line.strip())
            if m:
                rows.append((os.path.join(TESTDATA, sub, m.group(2).split("/")[-1] + ".wav"), sub, m.group(1)))
    # raw 16 kHz 16-bit files whose words the pocketsphinx sources' own tests state
    for name, text in (("goforward.raw", "go forward ten meters"),
                       ("tidigits/dhd.2934z.raw", "two nine three four zero")):
        path = os.path.join(out, "real", os.path.basename(name).replace(".raw", ".wav"))
        with open(os.path.join(TESTDATA, name), "rb") as f, wave.open(path, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(f.read())
        rows.append((path, "commands", text))
    with open(os.path.join(out, "real.tsv"), "w") as f:
        for p, g, t in rows:
            f.write(f"{p}\t{g}\t{t}\n")
    print(f"{out}/real.tsv: {len(rows)} utterances")


def pocketsphinx(list_path, digits, json_out):
    gram = None
    if digits:
        gram = tempfile.NamedTemporaryFile("w", suffix=".gram", delete=False)
        gram.write(DIGITS_JSGF)
        gram.close()
    groups, total, exact, n = {}, [0, 0, 0, 0], 0, 0
    out = open(json_out, "w") if json_out else None
    with tempfile.TemporaryDirectory() as tmp:
        for line in open(list_path):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            path, group, text = parts
            wav = os.path.join(tmp, "in.wav")
            subprocess.run(["sox", path, "-r", "16000", "-c", "1", "-b", "16", wav], check=True)
            cmd = ["pocketsphinx_continuous", "-infile", wav, "-logfn", "/dev/null"]
            if gram:
                cmd += ["-jsgf", gram.name]
            hyp = subprocess.run(cmd, capture_output=True, text=True).stdout
            ref, hyp = normalise(text), normalise(" ".join(hyp.split("\n")))
            n += 1
            exact += ref == hyp
            g = groups.setdefault(group, [0, 0, 0, 0])
            for acc in (g, total):
                acc[0] += len(ref.split()); acc[1] += edits(ref.split(), hyp.split())
                acc[2] += len(ref); acc[3] += edits(ref, hyp)
            if out:
                out.write(json.dumps({"file": path, "group": group, "ref": ref, "hyp": hyp}) + "\n")
    if gram:
        os.unlink(gram.name)
    print(f"{list_path}: pocketsphinx{' (digit grammar)' if digits else ''}: WER {100 * total[1] / max(total[0], 1):.2f}%"
          f"  CER {100 * total[3] / max(total[2], 1):.2f}%  exact {100 * exact / max(n, 1):.1f}% of {n} utterances"
          f" ({total[0]} words)")
    for name, g in groups.items():
        print(f"  {name:32s} WER {100 * g[1] / max(g[0], 1):6.2f}%  CER {100 * g[3] / max(g[2], 1):6.2f}%  ({g[0]} words)")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "real":
        real(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "pocketsphinx":
        j = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
        pocketsphinx(sys.argv[2], "--digits" in sys.argv, j)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
