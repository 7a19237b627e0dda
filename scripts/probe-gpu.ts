// Prints the WebGPU adapter this machine gives the engine, or why there is none.
import { getDevice } from '../src/gpu/index.js';

try {
  const gpu = await getDevice();
  const l = gpu.device.limits;
  console.log(`webgpu: ${gpu.description} (${gpu.adapterClass}); f16=${gpu.features.f16} subgroups=${gpu.features.subgroups} timestamps=${gpu.features.timestamps}; max binding ${(l.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, max buffer ${(l.maxBufferSize / 2 ** 30).toFixed(1)} GiB`);
  gpu.destroy();
} catch (e) {
  console.error((e as Error).message);
  process.exit(1);
}
