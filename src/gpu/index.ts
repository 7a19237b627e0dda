export { getDevice, Gpu, NO_ADAPTER_HELP, type GpuOptions, type AdapterClass, type GpuFeatures } from './device.js';
export { Tensor, partBuffer, toBf16Bits, bf16BitsToF32, toF16Bits, f16BitsToF32, numelOf, storageBytes, type DType } from './tensor.js';
export { Recorder, GpuError, type Binding, type UniformField, type ProfileEntry, type TypedArray } from './recorder.js';
export { preprocess, type Defines } from './pipelines.js';
