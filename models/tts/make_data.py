#!/usr/bin/env python3
"""The synthesiser's training data: the teacher voice (flite rms) reading the LJ Speech sentences and
generated sentences with numbers, dates, times and amounts. Python's standard library only; deterministic.

    models/tts/make_data.py OUTDIR --e2e build/tools/e2e [--jobs N] [--limit N]

Writes OUTDIR/sentences.txt (ID|written text), OUTDIR/normalised.txt (ID|what `e2e tts normalize` makes of
it: what the teacher reads and the model is given), OUTDIR/wav/ID.wav, and OUTDIR/{train,val}.tsv
(path, ID, normalised text). Held out (val): the LJ IDs in models/speech/split.txt and every 25th
generated sentence -- the same split the recogniser uses."""
import argparse
import concurrent.futures as cf
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("E2E_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
TEACHER = "rms"  # flite's voice; the split file keeps flite-rms out of ASR training

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Clark", "Lewis", "Walker", "Hall", "Young"]
PLACES = ["Boston", "Denver", "the station", "the office", "Main Street", "the airport", "the library"]
THINGS = ["tickets", "books", "apples", "chairs", "boxes", "letters", "cars", "houses", "songs", "miles"]


def held_out_ids():
    held = set()
    with open(os.path.join(ROOT, "models", "speech", "split.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line.startswith("lj "):
                held.add(line.split()[1])
    return held


def generated(r):
    """One sentence in written form: digits, symbols and abbreviations for the normaliser to read."""
    n = r.randint
    t = r.randrange(12)
    if t == 0:
        return f"The meeting is on {r.choice(MONTHS)} {n(1, 31)}, {n(1950, 2030)}, at {n(1, 12)}:{n(0, 59):02d} {r.choice(['am', 'pm', 'a.m.', 'p.m.'])}."
    if t == 1:
        return f"It costs ${n(1, 999)}.{n(0, 99):02d}, or about ${n(2, 90)} million in all."
    if t == 2:
        return f"{r.choice(['Mr.', 'Mrs.', 'Dr.', 'Ms.'])} {r.choice(NAMES)} sold {n(2, 99999):,} {r.choice(THINGS)} in {n(1800, 2025)}."
    if t == 3:
        return f"Call {n(100, 999)}-{n(100, 999)}-{n(1000, 9999)} before {n(1, 12)}:{r.choice(['00', '15', '30', '45'])}."
    if t == 4:
        return f"The {nth(n(1, 99))} runner finished in {n(2, 59)} minutes and {n(1, 59)} seconds."
    if t == 5:
        return f"Prices rose {n(1, 99)}.{n(1, 9)}% in {r.choice(MONTHS)}, and {n(2, 90)}% of people noticed."
    if t == 6:
        return f"On {n(1, 12)}/{n(1, 28)}/{n(1990, 2030)} the train left {r.choice(PLACES)} at {n(1, 12)}:{n(10, 59)}."
    if t == 7:
        return f"Room {n(1, 999)} holds {n(2, 500)} people, and the hall holds {n(1000, 20000):,}."
    if t == 8:
        return f"She turned {n(18, 99)} on the {nth(n(1, 31))} of {r.choice(MONTHS)}."
    if t == 9:
        return f"The temperature fell to -{n(1, 40)} degrees at {r.choice(PLACES)}."
    if t == 10:
        return f"Flight {r.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{r.choice('ABCDEFGHJKLMNPRSTUVWXYZ')} {n(10, 9999)} to {r.choice(['Boston', 'Denver', 'Paris', 'Tokyo'])} leaves at {n(1, 12)}:{n(10, 59)} {r.choice(['am', 'pm'])}."
    return f"Chapter {n(1, 40)}, page {n(1, 900)}: {r.choice(NAMES)} & {r.choice(NAMES)} paid \u00a3{n(1, 500)}."


def nth(v):
    """1st, 2nd, 3rd, 11th, 22nd."""
    return f"{v}{'th' if 10 <= v % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(v % 10, 'th')}"


def read_lj():
    rows = []
    with open(os.path.join(SHARED, "speech", "ljspeech-text", "metadata.csv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) >= 2 and parts[1].strip():
                rows.append((parts[0], parts[1].strip()))
    return rows


def synth(job):
    path, text = job
    if os.path.exists(path) and os.path.getsize(path) > 44:
        return True
    tmp = path + ".tmp.wav"
    try:
        subprocess.run(["flite", "-voice", TEACHER, "-t", text, "-o", tmp], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        os.replace(tmp, path)
        return True
    except (subprocess.SubprocessError, OSError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--e2e", required=True)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--generated", type=int, default=2500)
    ap.add_argument("--limit", type=int, default=0, help="at most this many training sentences (a quick run)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "wav"), exist_ok=True)
    r = random.Random(a.seed)
    held = held_out_ids()
    rows = read_lj()
    gen = [(f"GEN-{i:05d}", generated(r)) for i in range(1, a.generated + 1)]
    with open(os.path.join(a.out, "sentences.txt"), "w", encoding="utf-8") as f:
        for i, t in rows + gen:
            f.write(f"{i}|{t}\n")
    with open(os.path.join(a.out, "sentences.txt"), "rb") as src:
        norm = subprocess.run([a.e2e, "tts", "normalize"], stdin=src, check=True, capture_output=True).stdout
    with open(os.path.join(a.out, "normalised.txt"), "wb") as f:
        f.write(norm)
    train, val = [], []
    for line in norm.decode("utf-8").splitlines():
        i, t = line.split("|", 1)
        if not t.strip():
            continue
        is_val = i in held or (i.startswith("GEN-") and int(i[4:]) % 25 == 0)
        (val if is_val else train).append((i, t))
    if a.limit:
        train = train[:a.limit]
    jobs = [(os.path.join(a.out, "wav", i + ".wav"), t) for i, t in train + val]
    done = 0
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        for k, ok in enumerate(ex.map(synth, jobs)):
            done += ok
            if (k + 1) % 1000 == 0:
                print(f"  {k + 1}/{len(jobs)} sentences read by flite {TEACHER}", flush=True)
    for name, rows_ in (("train", train), ("val", val)):
        with open(os.path.join(a.out, f"{name}.tsv"), "w", encoding="utf-8") as f:
            for i, t in rows_:
                p = os.path.join(a.out, "wav", i + ".wav")
                if os.path.exists(p):
                    f.write(f"{p}\t{i}\t{t}\n")
    print(f"{len(train)} training and {len(val)} held-out sentences; {done}/{len(jobs)} synthesised")
    return 0 if done == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
