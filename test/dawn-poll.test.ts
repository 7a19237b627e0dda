import { afterAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../src/gpu/index.js';
import { testGpu } from './util.js';

// Dawn's Node bindings poll for finished GPU work with a self-requeueing setImmediate; the device
// module throttles that poll (src/gpu/dawn-poll.ts). Counted here: polls per millisecond of a long
// GPU wait (unthrottled: one per event-loop turn, tens per millisecond), and that everyone else's
// setImmediate callbacks still run at once with their arguments.

let gpu: Gpu;
afterAll(() => gpu?.destroy());

/** Polls made by the bindings while `wait` runs, counted by a wrapper over the installed setImmediate. */
async function countPolls<T>(wait: () => Promise<T>): Promise<{ polls: number; ms: number }> {
  const installed = globalThis.setImmediate;
  let polls = 0;
  globalThis.setImmediate = Object.assign((fn: (...a: unknown[]) => void, ...args: unknown[]) => {
    if (args.length === 0 && fn.name === '' && Function.prototype.toString.call(fn).includes('[native code]')) polls++;
    return installed(fn, ...args);
  }, installed) as typeof setImmediate;
  const t0 = performance.now();
  try {
    await wait();
  } finally {
    globalThis.setImmediate = installed;
  }
  return { polls, ms: performance.now() - t0 };
}

describe('Dawn event polling', () => {
  it('a long GPU wait polls about once a millisecond, not in a busy loop', async () => {
    gpu = await testGpu();
    const { device } = gpu;
    // a dispatch that keeps the (software) GPU busy for a while: a long dependent loop per lane
    const module = device.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
        @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
          var x = f32(g.x);
          for (var i = 0u; i < 400000u; i++) { x = x * 1.0000001 + 0.5; }
          o[g.x] = x;
        }`,
    });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const buffer = device.createBuffer({ size: 4 * 64 * 16, usage: GPUBufferUsage.STORAGE });
    const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(16);
    pass.end();
    device.queue.submit([enc.finish()]);
    const { polls, ms } = await countPolls(() => device.queue.onSubmittedWorkDone());
    buffer.destroy();
    expect(ms).toBeGreaterThan(20); // the wait is long enough to tell polling rates apart
    expect(polls / ms).toBeLessThan(1.2);
  });

  it('other callbacks keep the real setImmediate: prompt, with their arguments, cancellable', async () => {
    gpu ??= await testGpu();
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      setTimeout(() => {
        order.push('timer');
        resolve();
      }, 20);
      setImmediate((a: string, b: number) => order.push(`immediate ${a} ${b}`), 'x', 2);
      clearImmediate(setImmediate(() => order.push('cancelled')));
      setImmediate(function named() {
        order.push('named');
      });
    });
    expect(order).toEqual(['immediate x 2', 'named', 'timer']);
  });
});
