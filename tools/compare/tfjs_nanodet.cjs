// NanoDet as TensorFlow.js itself runs it (npm @tensorflow/tfjs with the wasm backend, in Node, no network),
// on the very inputs `e2e detect --dump-input` gave nncore, with the head decoded here in JavaScript the
// way NanoDet does (per-level sigmoid scores, softmax distance distributions over reg_max + 1 bins, cell
// centres at (i + 0.5) * stride, class-wise NMS): prints one JSON line of boxes per image, frame pixels.
//   node tfjs_nanodet.cjs MODEL_DIR/nanodet.json NCCORE.jsonl DUMP_DIR [THRESHOLD]
// With TIME_RUNS=N (and TIME_THREADS=T) it instead prints the fastest of N runs of the network on the
// first input, the wasm backend on T threads (its threaded SIMD build), as one JSON line.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');

const MEAN = [103.53, 116.28, 123.675], STD = [57.375, 57.12, 58.395]; // BGR, as NanoDet
const IOU = 0.6, MAX = 100, PRE_NMS = 1000;

function iou(a, b) {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]), h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const i = w * h;
  return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i);
}

function decode(levels, size, thr) {
  let cand = [];
  for (const { cls, reg, n, C, R } of levels) {
    const side = Math.round(Math.sqrt(n)), stride = size / side;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 0; c < C; c++) best = Math.max(best, cls[i * C + c]);
      if (!(best >= thr)) continue;
      const d = [];
      for (let k = 0; k < 4; k++) {
        const o = i * 4 * R + k * R;
        let mx = -Infinity, sum = 0, e = 0;
        for (let j = 0; j < R; j++) mx = Math.max(mx, reg[o + j]);
        for (let j = 0; j < R; j++) { const p = Math.exp(reg[o + j] - mx); sum += p; e += p * j; }
        d.push((e / sum) * stride);
      }
      const cx = ((i % side) + 0.5) * stride, cy = (Math.floor(i / side) + 0.5) * stride;
      const clip = (v) => Math.min(Math.max(v, 0), size);
      const box = [clip(cx - d[0]), clip(cy - d[1]), clip(cx + d[2]), clip(cy + d[3])];
      for (let c = 0; c < C; c++) if (cls[i * C + c] >= thr) cand.push([...box, cls[i * C + c], c]);
    }
  }
  cand.sort((a, b) => b[4] - a[4]);
  cand = cand.slice(0, PRE_NMS);
  const kept = [];
  for (const b of cand) {
    if (kept.length >= MAX) break;
    if (!kept.some((k) => k[5] === b[5] && iou(k, b) > IOU)) kept.push(b);
  }
  return kept;
}

async function main() {
  const [modelJson, oursJsonl, dumpDir, thrArg] = process.argv.slice(2);
  const thr = thrArg ? Number(thrArg) : 0.05;
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
  if (process.env.TIME_THREADS) wasm.setThreadsCount(Number(process.env.TIME_THREADS));
  await tf.setBackend('wasm');
  const json = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const shards = json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(path.dirname(modelJson), p))));
  const data = Buffer.concat(shards);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
    signature: json.signature, weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
  }));
  const timeRuns = Number(process.env.TIME_RUNS || 0);
  for (const line of fs.readFileSync(oursJsonl, 'utf8').split('\n').filter(Boolean)) {
    const ours = JSON.parse(line), S = ours.size, hw = S * S;
    const raw = fs.readFileSync(path.join(dumpDir, path.basename(ours.image) + '.f32'));
    const v = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    const x = new Float32Array(3 * hw); // ours: (u/255 - 0.5) / 0.25 in RGB; the model's: (u - mean) / std in BGR
    for (let c = 0; c < 3; c++) for (let i = 0; i < hw; i++) x[c * hw + i] = (v[(2 - c) * hw + i] * 63.75 + 127.5 - MEAN[c]) / STD[c];
    const input = tf.tensor4d(x, [1, 3, S, S]);
    if (timeRuns) {
      let best = Infinity;
      for (let r = 0; r < timeRuns; r++) {
        const t0 = process.hrtime.bigint();
        const o = model.execute(input, model.outputNodes);
        o.forEach((t) => t.dataSync());
        best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
        tf.dispose(o);
      }
      console.log(JSON.stringify({ engine: 'tfjs ' + tf.version.tfjs + ' wasm', threads: wasm.getThreadsCount(), size: S, best_ms: best }));
      return;
    }
    const outs = model.execute(input, model.outputNodes);
    const byN = {};
    for (const t of outs) {
      const [, n, k] = t.shape;
      (byN[n] = byN[n] || {})[k === 80 ? 'cls' : 'reg'] = { data: t.dataSync(), k };
    }
    const levels = Object.entries(byN).map(([n, o]) => ({ n: Number(n), cls: o.cls.data, reg: o.reg.data, C: 80, R: o.reg.k / 4 }));
    const boxes = decode(levels, S, thr).map((b) => {
      const f = (val, pad, lim) => Math.min(Math.max((val - pad) / ours.scale, 0), lim);
      return [f(b[0], ours.pad_x, ours.width), f(b[1], ours.pad_y, ours.height), f(b[2], ours.pad_x, ours.width), f(b[3], ours.pad_y, ours.height), b[4], b[5]];
    }).filter((b) => b[2] > b[0] && b[3] > b[1]); // wholly in the letterbox padding: no area in the frame (as e2edetect)
    console.log(JSON.stringify({ image: ours.image, engine: 'tfjs ' + tf.version.tfjs + ' wasm', boxes }));
    tf.dispose([input, ...outs]);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
