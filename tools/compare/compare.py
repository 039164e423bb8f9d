"""nncore against ONNX Runtime on the same ONNX model and input: outputs (max|diff| <= 1e-4 max|ref|) and
speed at 1 and 2 threads (fastest of REPEAT runs, rounds alternating between the engines, ratio
nncore/ORT). Needs node with onnxruntime-node installed (npm install --ignore-scripts onnxruntime-node)
and NODE_PATH pointing at its node_modules.

    /usr/bin/python3 tools/compare/compare.py MODEL.onnx SIZE [--image PHOTO] [--build build] [--repeat 10] [--rounds 3]
The input is a photo resized to SIZE x SIZE with ImageNet's mean/std (a detector's outputs on noise can be
all near zero, which makes a relative tolerance meaningless), or Gaussian noise without --image.
Prints one JSON line per thread count.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def run_ours(build, model, size, x_path, out_path, threads, repeat):
    r = subprocess.run([os.path.join(build, "tools", "e2e"), "graph", "run", model, "--input-size", str(size), "--input", x_path,
                        "--out", out_path, "--threads", str(threads), "--repeat", str(repeat)],
                       check=True, capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    return float(r.stdout.split("fastest of")[1].split("runs")[1].split("ms")[0])


def run_ort(model, x_path, shape, out_path, threads, repeat):
    r = subprocess.run(["node", os.path.join(HERE, "ort_run.cjs"), model, x_path, ",".join(map(str, shape)), out_path, str(threads),
                        str(repeat)], check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("size", type=int)
    ap.add_argument("--build", default="build")
    ap.add_argument("--image")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    shape = (1, 3, a.size, a.size)
    if a.image:
        from PIL import Image
        rgb = np.asarray(Image.open(a.image).convert("RGB").resize((a.size, a.size), Image.BILINEAR), np.float32) / 255.0
        rgb = (rgb - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]).astype(np.float32)
    else:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        xp, yo, yr = (os.path.join(tmp, n) for n in ("x.f32", "ours.f32", "ort.f32"))
        x.tofile(xp)
        for threads in (1, 2):
            ours, ort = [], []
            info = None
            for _ in range(a.rounds):
                ours.append(run_ours(a.build, a.model, a.size, xp, yo, threads, a.repeat))
                info = run_ort(a.model, xp, shape, yr, threads, a.repeat)
                ort.append(info["best_ms"])
            mine, ref = np.fromfile(yo, np.float32), np.fromfile(yr, np.float32)
            same_size = mine.size == ref.size
            diff = float(np.max(np.abs(mine - ref))) if same_size else float("inf")
            scale = float(np.max(np.abs(ref)))
            print(json.dumps({"model": os.path.basename(a.model), "size": a.size, "threads": threads, "nncore_ms": min(ours),
                              "ort_ms": min(ort), "ratio": min(ours) / min(ort), "max_abs_diff": diff, "max_abs_ref": scale,
                              "within_1e-4_of_max": diff <= 1e-4 * scale, "ort": info["engine"],
                              "cpu_isa": os.environ.get("OPENBLAS_CORETYPE", "autodetect")}))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
