/**
 * The ONNX protobuf schema (onnx.proto, embedded as a protobufjs JSON descriptor) and the encoder
 * for ModelProto. Messages are built as plain objects (see lower.ts) and verified/encoded by
 * protobufjs; no protobuf bytes are written by hand.
 */
import protobuf from 'protobufjs/light.js';
import { ONNX_DESCRIPTOR_JSON } from './onnx-descriptor.js';

let root: protobuf.Root | undefined;

export function onnxRoot(): protobuf.Root {
  root ??= protobuf.Root.fromJSON(JSON.parse(ONNX_DESCRIPTOR_JSON) as protobuf.INamespace);
  return root;
}

export function modelType(): protobuf.Type {
  return onnxRoot().lookupType('onnx.ModelProto');
}

/** TensorProto.DataType values used here. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  BFLOAT16: 16,
} as const;

/** AttributeProto.AttributeType values used here. */
export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  INTS: 7,
} as const;

/** Checks a ModelProto-shaped object against the schema and encodes it. */
export function encodeModel(model: Record<string, unknown>): Uint8Array {
  const type = modelType();
  const err = type.verify(model);
  if (err) throw new Error(`onnx: invalid ModelProto: ${err}`);
  return type.encode(type.fromObject(model)).finish();
}

/** Decodes a serialized ModelProto into a plain object (int64 as numbers, bytes as Uint8Array). */
export function decodeModel(bytes: Uint8Array): Record<string, any> {
  const type = modelType();
  return type.toObject(type.decode(bytes), { longs: Number, defaults: false }) as Record<string, any>;
}
