// Runs one ONNX file in ONNX Runtime for the export tests.
//
// stdin:  {"model": "path.onnx", "inputs": {"name": {"dtype": "float32", "dims": [..], "data": [..]}}}
// stdout: {"outputs": [{"name": .., "dtype": .., "dims": [..], "data": [..]}, ...]}
//         in the graph's output order (a list: JavaScript objects put
//         integer-like keys such as torch's "12" first).
// On failure it prints one line naming the model and the error to stderr and exits 1.
'use strict';
const ort = require('onnxruntime-node');

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array,
  int32: Int32Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

function toTensor(spec) {
  const Ctor = ARRAYS[spec.dtype];
  if (!Ctor) throw new Error(`unsupported input dtype ${spec.dtype}`);
  const data = spec.dtype === 'int64' ? spec.data.map((v) => BigInt(v)) : spec.data;
  return new ort.Tensor(spec.dtype, Ctor.from(data), spec.dims);
}

function fromTensor(t) {
  const data = Array.from(t.data, (v) => (typeof v === 'bigint' ? Number(v) : v));
  return { dtype: t.type, dims: Array.from(t.dims), data };
}

async function main() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  try {
    const session = await ort.InferenceSession.create(req.model);
    const feeds = {};
    for (const [name, spec] of Object.entries(req.inputs)) feeds[name] = toTensor(spec);
    const results = await session.run(feeds);
    const outputs = session.outputNames.map((name) => ({ name, ...fromTensor(results[name]) }));
    process.stdout.write(JSON.stringify({ outputs }));
  } catch (e) {
    process.stderr.write(`ort-run: ${req.model}: ${e.message}\n`);
    process.exitCode = 1;
  }
}

main();
