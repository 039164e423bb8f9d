// Runs an ONNX model with ONNX Runtime (npm onnxruntime-node) on raw float32 input: writes every output
// as raw float32 and prints the fastest of N runs. Used by compare.py beside `e2e graph run`.
//   node ort_run.cjs MODEL.onnx INPUT.f32 N,C,H,W OUT.f32 THREADS REPEAT
const ort = require('onnxruntime-node');
const fs = require('fs');

async function main() {
  const [model, inPath, shapeStr, outPath, threads, repeat] = process.argv.slice(2);
  const shape = shapeStr.split(',').map(Number);
  const raw = fs.readFileSync(inPath);
  const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
  let best = Infinity, out = null;
  for (let r = 0; r < Number(repeat); r++) {
    const t0 = process.hrtime.bigint();
    out = await session.run(feeds);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms < best) best = ms;
  }
  const parts = session.outputNames.map((n) => Buffer.from(out[n].data.buffer, out[n].data.byteOffset, out[n].data.byteLength));
  fs.writeFileSync(outPath, Buffer.concat(parts));
  console.log(JSON.stringify({ engine: 'onnxruntime-node ' + require('onnxruntime-node/package.json').version, threads: Number(threads), best_ms: best,
    outputs: session.outputNames.map((n) => [n, out[n].dims]) }));
}
main().catch((e) => { console.error(e); process.exit(1); });
