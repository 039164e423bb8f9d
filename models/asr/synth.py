#!/usr/bin/env python3
"""Synthesises the recogniser's training and validation speech with every English voice Debian offers
(espeak-ng, mbrola through espeak-ng, flite, festival, svox pico), and writes the lists that
`e2e asr features` turns into shards. Python's standard library only; deterministic for a seed.

    models/asr/synth.py OUTDIR [--copies N] [--seed N] [--jobs N]

Reads models/speech/split.txt (held-out LJ Speech IDs and voices), ../shared/data/speech/ljspeech-text and
../shared/data/speech/fsdd. Writes OUTDIR/wav/..., and OUTDIR/{train,val_seen,val_unseen,fsdd_train,
fsdd_val,fsdd_eval_speakers,fsdd_eval_recordings}.tsv (path, group, transcript)."""
import argparse
import concurrent.futures as cf
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("E2E_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))

ESPEAK_VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029"]
ESPEAK_VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "Andy", "Annie", "Denis", "Storm", "anika", "belinda", "david", "linda", "steph", "edward", "grandma",
                   "john", "shelby", "travis", "victor", "m8", "klatt3", "iven"]
MBROLA_VOICES = ["us1", "us2", "us3", "en1", "af1-en", "nl2-en", "fr1-en", "fr4-en", "de1-en", "de2-en", "de3-en",
                 "de4-en", "de5-en", "de6-en", "gr2-en", "hu1-en", "pl1-en", "ro1-en", "sw1-en", "sw2-en"]
FLITE_VOICES = ["kal", "kal16", "awb", "slt", "rms"]
FESTIVAL_VOICES = ["kal_diphone", "ked_diphone", "don_diphone", "cmu_us_slt_arctic_hts"]
PICO_VOICES = ["en-US", "en-GB"]
# how training sentences are shared out: engine first, then a voice of it
ENGINE_WEIGHTS = {"espeak": 0.25, "mbrola": 0.25, "flite": 0.2, "festival": 0.15, "pico": 0.15}


def all_voices():
    v = [("espeak", x) for x in ESPEAK_VOICES] + [("mbrola", x) for x in MBROLA_VOICES]
    v += [("flite", x) for x in FLITE_VOICES] + [("festival", x) for x in FESTIVAL_VOICES]
    return v + [("pico", x) for x in PICO_VOICES]


def group_of(engine, voice):
    return f"{engine}-{voice}"


def read_split():
    held_ids, held_voices = set(), set()
    with open(os.path.join(ROOT, "models", "speech", "split.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line.startswith("voice "):
                held_voices.add(line.split()[1])
            elif line.startswith("lj "):
                held_ids.add(line.split()[1])
    return held_ids, held_voices


def read_lj():
    rows = []
    with open(os.path.join(SHARED, "speech", "ljspeech-text", "metadata.csv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) == 3:
                rows.append((parts[0], parts[2]))
    return rows


def synth_one(job):
    """One utterance through a command-line synthesiser; festival jobs come in batches (its start-up is slow)."""
    engine, voice, text, path, r = job
    try:
        if engine in ("espeak", "mbrola"):
            name = voice if engine == "espeak" else "mb-" + voice
            if engine == "espeak" and r["variant"]:
                name += "+" + r["variant"]
            cmd = ["espeak-ng", "-v", name, "-s", str(r["speed"]), "-p", str(r["pitch"]), "-w", path, text]
        elif engine == "flite":
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={r['stretch']:.2f}", "-t", text, "-o", path]
        elif engine == "pico":
            cmd = ["pico2wave", "-l", voice, "-w", path, text]
        else:
            raise ValueError(engine)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        return path if os.path.exists(path) and os.path.getsize(path) > 1000 else None
    except Exception:
        return None


def festival_batch(voice, items):
    """items: (text, path, stretch). One festival process for many utterances."""
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as f:
        f.write(f"(voice_{voice})\n")
        for text, path, stretch in items:
            t = text.replace("\\", " ").replace('"', " ")
            f.write(f"(Parameter.set 'Duration_Stretch {stretch:.2f})\n")
            f.write(f'(utt.save.wave (utt.synth (Utterance Text "{t}")) "{path}" \'riff)\n')
        scm = f.name
    try:
        subprocess.run(["festival", "--batch", scm], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60 + 10 * len(items))
    except Exception:
        pass
    os.unlink(scm)
    return [p for _, p, _ in items if os.path.exists(p) and os.path.getsize(p) > 1000]


def variation(r, engine):
    return {"variant": r.choice(ESPEAK_VARIANTS), "speed": r.randint(130, 210), "pitch": r.randint(25, 75),
            "stretch": r.uniform(0.85, 1.2)}


def run(jobs, workers):
    """jobs: (engine, voice, text, path, group, variation). Returns the (path, group, text) made."""
    done = []
    plain = [j for j in jobs if j[0] != "festival" and not os.path.exists(j[3])]
    fest = {}
    for j in jobs:
        if j[0] == "festival" and not os.path.exists(j[3]):
            fest.setdefault(j[1], []).append((j[2], j[3], j[5]["stretch"]))
    with cf.ThreadPoolExecutor(workers) as ex:
        futs = [ex.submit(synth_one, (e, v, t, p, r)) for e, v, t, p, g, r in plain]
        for voice, items in fest.items():
            for k in range(0, len(items), 200):
                futs.append(ex.submit(festival_batch, voice, items[k:k + 200]))
        for i, fu in enumerate(cf.as_completed(futs)):
            fu.result()
            if i % 1000 == 0:
                print(f"  {i}/{len(futs)} synthesis jobs", file=sys.stderr, flush=True)
    for e, v, t, p, g, r in jobs:
        if os.path.exists(p) and os.path.getsize(p) > 1000:
            done.append((p, g, t))
    return done


def write_list(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for p, g, t in rows:
            f.write(f"{p}\t{g}\t{t}\n")
    print(f"{path}: {len(rows)} utterances", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--copies", type=int, default=1, help="voices per training sentence")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--val-seen", type=int, default=40, help="held-out sentences per training voice")
    ap.add_argument("--val-unseen", type=int, default=200, help="held-out sentences per held-out voice")
    ap.add_argument("--generated", type=int, default=3000, help="generated number/date/command sentences")
    a = ap.parse_args()
    r = random.Random(a.seed)
    held_ids, held_voices = read_split()
    lj = read_lj()
    gen = subprocess.run([sys.executable, os.path.join(HERE, "gen_sentences.py"), str(a.generated), "7"],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    gen = [(f"GEN-{i:05d}", s) for i, s in enumerate(gen) if s]
    # generated sentences: every 25th held out, like the LJ slice in split.txt
    train_text = [x for x in lj if x[0] not in held_ids] + [x for i, x in enumerate(gen) if i % 25]
    val_text = [x for x in lj if x[0] in held_ids] + [x for i, x in enumerate(gen) if i % 25 == 0]
    # the language model's text: training sentences only (models/asr/README.md)
    with open(os.path.join(a.out, "lm_train.txt"), "w", encoding="utf-8") as f:
        for _, text in train_text:
            f.write(text + "\n")
    voices = all_voices()
    train_voices = {e: [v for (ee, v) in voices if ee == e and group_of(e, v) not in held_voices] for e in ENGINE_WEIGHTS}
    unseen = [(e, v) for (e, v) in voices if group_of(e, v) in held_voices]
    wav = os.path.join(a.out, "wav")
    jobs = []
    engines = list(ENGINE_WEIGHTS)
    weights = [ENGINE_WEIGHTS[e] for e in engines]
    for copy in range(a.copies):
        for uid, text in train_text:
            e = r.choices(engines, weights)[0]
            v = r.choice(train_voices[e])
            d = os.path.join(wav, "train", group_of(e, v))
            jobs.append((e, v, text, os.path.join(d, f"{uid}-{copy}.wav"), group_of(e, v), variation(r, e)))
    val_seen, val_unseen = [], []
    for e in engines:
        for v in train_voices[e]:
            for uid, text in r.sample(val_text, a.val_seen):
                d = os.path.join(wav, "val", group_of(e, v))
                val_seen.append((e, v, text, os.path.join(d, f"{uid}.wav"), group_of(e, v), variation(r, e)))
    for e, v in unseen:
        for uid, text in r.sample(val_text, a.val_unseen):
            d = os.path.join(wav, "val", group_of(e, v))
            # held-out voices speak at their own default rate: they are what a user would run
            val_unseen.append((e, v, text, os.path.join(d, f"{uid}.wav"), group_of(e, v),
                               {"variant": "", "speed": 175, "pitch": 50, "stretch": 1.0}))
    for j in jobs + val_seen + val_unseen:
        os.makedirs(os.path.dirname(j[3]), exist_ok=True)
    print(f"synthesising {len(jobs)} training and {len(val_seen) + len(val_unseen)} validation utterances",
          file=sys.stderr, flush=True)
    write_list(os.path.join(a.out, "val_unseen.tsv"), run(val_unseen, a.jobs))
    write_list(os.path.join(a.out, "val_seen.tsv"), run(val_seen, a.jobs))
    write_list(os.path.join(a.out, "train.tsv"), run(jobs, a.jobs))
    # real speech: FSDD by the data README's rule (train: four speakers, recordings 5-49)
    fsdd = os.path.join(SHARED, "speech", "fsdd")
    tr, val, ev_spk, ev_rec = [], [], [], []
    for name in sorted(os.listdir(fsdd)) if os.path.isdir(fsdd) else []:
        if not name.endswith(".wav"):
            continue
        digit, speaker, n = name[:-4].split("_")
        row = (os.path.join(fsdd, name), f"fsdd-{speaker}", ONES[int(digit)])
        if speaker in ("lucas", "yweweler"):
            ev_spk.append(row)
        elif int(n) < 5:
            ev_rec.append(row)
        elif int(n) < 10:
            val.append(row)  # our own validation slice of the training speakers: the eval sets stay unseen
        else:
            tr.append(row)
    write_list(os.path.join(a.out, "fsdd_train.tsv"), tr)
    write_list(os.path.join(a.out, "fsdd_val.tsv"), val)
    write_list(os.path.join(a.out, "fsdd_eval_speakers.tsv"), ev_spk)
    write_list(os.path.join(a.out, "fsdd_eval_recordings.tsv"), ev_rec)


ONES = "zero one two three four five six seven eight nine".split()

if __name__ == "__main__":
    main()
