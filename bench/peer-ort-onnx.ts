// One-node ONNX models for the onnxruntime-web peer (bench/peer-ort.ts), written as protobuf bytes
// by hand: the handful of onnx.proto fields a single-node graph needs fit in a small encoder, so the
// bench needs nothing beyond npm on a fresh machine (no python onnx package, no .proto file).
// Field numbers are onnx.proto's (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto, TypeProto); wire types: 0 varint, 2 length-delimited.

/** ONNX TensorProto.DataType values used here */
export const OnnxType = { float: 1, uint8: 2, float16: 10 } as const;

/** bytes written straight into the model's buffer (an initializer of hundreds of MB is never held twice) */
export interface Filler {
  length: number;
  fill: (dst: Uint8Array) => void;
}

/** an encoded field as pieces, concatenated once at the end */
type Field = (Uint8Array | Filler)[];

function varint(v: number): number[] {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`protobuf varint: ${v} is not a non-negative safe integer`);
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

const size = (f: Field) => f.reduce((s, p) => s + p.length, 0);
/** varint field (int32, int64, enum) */
const int = (field: number, v: number): Field => [Uint8Array.from([...varint(field << 3), ...varint(v)])];
/** length-delimited field (string, bytes, embedded message) */
const bytes = (field: number, b: Uint8Array | Filler): Field => [Uint8Array.from([...varint((field << 3) | 2), ...varint(b.length)]), b];
const str = (field: number, s: string): Field => bytes(field, new TextEncoder().encode(s));
const msg = (field: number, ...fields: Field[]): Field => {
  const body = fields.flat();
  return [Uint8Array.from([...varint((field << 3) | 2), ...varint(size(body))]), ...body];
};

export interface OnnxTensor {
  name: string;
  type: number;
  dims: number[];
  /** little-endian raw data */
  data: Uint8Array | Filler;
}

export interface OnnxNode {
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  /** INT attributes only (all MatMulNBits needs) */
  intAttrs?: Record<string, number>;
}

export interface OnnxValue {
  name: string;
  type: number;
  /** a string is a symbolic dimension (any size at run time) */
  dims: (number | string)[];
}

/** ModelProto bytes of a graph of `nodes` with constant `initializers` (opset 21, com.microsoft 1). */
export function onnxModel(nodes: OnnxNode[], initializers: OnnxTensor[], inputs: OnnxValue[], outputs: OnnxValue[]): Uint8Array {
  // ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1: {dim_value=1 | dim_param=2}}}}}
  const dim = (d: number | string) => msg(1, typeof d === 'string' ? str(2, d) : int(1, d));
  const valueInfo = (field: number, v: OnnxValue) => msg(field, str(1, v.name), msg(2, msg(1, int(1, v.type), msg(2, ...v.dims.map(dim)))));
  // NodeProto{input=1, output=2, name=3, op_type=4, attribute=5: {name=1, i=3, type=20 (INT=2)}, domain=7}
  const node = (n: OnnxNode, i: number) =>
    msg(
      1,
      ...n.inputs.map((s) => str(1, s)),
      ...n.outputs.map((s) => str(2, s)),
      str(3, `node${i}`),
      str(4, n.opType),
      ...Object.entries(n.intAttrs ?? {}).map(([k, v]) => msg(5, str(1, k), int(3, v), int(20, 2))),
      ...(n.domain ? [str(7, n.domain)] : []),
    );
  // TensorProto{dims=1, data_type=2, name=8, raw_data=9}
  const tensor = (t: OnnxTensor) => msg(5, ...t.dims.map((d) => int(1, d)), int(2, t.type), str(8, t.name), bytes(9, t.data));
  // GraphProto{node=1, name=2, initializer=5, input=11, output=12}
  const graph = msg(7, ...nodes.map(node), str(2, 'peer'), ...initializers.map(tensor), ...inputs.map((v) => valueInfo(11, v)), ...outputs.map((v) => valueInfo(12, v)));
  // ModelProto{ir_version=1, producer_name=2, graph=7, opset_import=8: {domain=1, version=2}}
  const model = [int(1, 10), str(2, 'pvc-webgpu bench'), graph, msg(8, str(1, ''), int(2, 21)), msg(8, str(1, 'com.microsoft'), int(2, 1))].flat();
  const out = new Uint8Array(size(model));
  let off = 0;
  for (const p of model) {
    if (p instanceof Uint8Array) out.set(p, off);
    else p.fill(out.subarray(off, off + p.length));
    off += p.length;
  }
  return out;
}
