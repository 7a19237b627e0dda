import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Prefault, memfdRanges } from '../src/weights/prefault.js';
import { testGpu } from './util.js';

/** The kernel's own account of a mapping: resident KiB of the range starting at `start` (/proc/self/smaps). */
function residentKiB(start: number): number {
  const smaps = readFileSync('/proc/self/smaps', 'utf8');
  const at = smaps.indexOf(`\n${start.toString(16)}-`);
  if (at < 0) throw new Error(`no mapping at ${start.toString(16)}`);
  return Number(/\nRss:\s+(\d+) kB/.exec(smaps.slice(at))![1]);
}

const memfds = () => memfdRanges(readFileSync('/proc/self/maps', 'utf8'));

describe('pre-faulting fresh weight memory', () => {
  it('finds shared memfd mappings in /proc/self/maps text, and nothing else', () => {
    const maps = [
      '7f71de000000-7f71e0000000 rw-s 00002000 00:01 140019                     /memfd:allocation fd (deleted)',
      '7f71e0000000-7f71e0100000 rw-p 00000000 00:00 0 ',
      '7f79e0646000-7f79e0647000 r--s 00001000 00:01 140019                     /memfd:allocation fd (deleted)',
      '55d0c0000000-55d0c0021000 rw-s 00000000 00:05 7                          /dev/zero (deleted)',
    ].join('\n');
    expect(memfdRanges(maps)).toEqual([[0x7f71de000000, 0x7f71e0000000]]);
  });

  it('a weight allocated through it is resident before anything writes it; one allocated without it is not', async (ctx) => {
    const gpu = await testGpu();
    const prefault = await Prefault.open();
    if (gpu.adapterClass !== 'software' || !prefault) return ctx.skip();
    const fresh = async (alloc: () => Promise<unknown>) => {
      const before = new Set(memfds().map(([a]) => a));
      await alloc();
      return memfds().filter(([a]) => !before.has(a));
    };
    // 2560 x 4096 bf16 = 20 MiB: its own allocation (Dawn sub-allocates only small resources)
    const withIt = await fresh(() => prefault.around(() => gpu.allocWeight([2560, 4096], 'bf16', 'prefaulted')));
    await prefault.settle();
    const without = await fresh(() => gpu.allocWeight([2560, 4096], 'bf16', 'plain'));
    prefault.close();
    expect(withIt.length).toBeGreaterThan(0);
    expect(without.length).toBeGreaterThan(0);
    const bytes = withIt.reduce((s, [a, b]) => s + b - a, 0);
    expect(bytes).toBeGreaterThanOrEqual(2560 * 4096 * 2);
    expect(prefault.bytes).toBe(bytes);
    for (const [a, b] of withIt) expect(residentKiB(a)).toBe((b - a) / 1024);
    for (const [a, b] of without) expect(residentKiB(a)).toBeLessThan((b - a) / 1024 / 10);
  });
});
