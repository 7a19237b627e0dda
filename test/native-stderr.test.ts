// The stderr filter that keeps Dawn's two adapter warnings off the CLI's output: warnings dropped
// wherever the chunks split them, every other byte passed on in order and without waiting for a
// line end (progress bars redraw with \r).

import { describe, expect, it } from 'vitest';
import { dawnWarningFilter } from '../src/gpu/native-stderr.js';

const W1 = 'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n';
const W2 = 'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n';

function filtered(chunks: string[]): { out: string; writes: string[] } {
  const writes: string[] = [];
  const f = dawnWarningFilter((s) => writes.push(s));
  for (const c of chunks) f.push(c);
  f.end();
  return { out: writes.join(''), writes };
}

describe('dawnWarningFilter', () => {
  it('drops both warnings however the stream is cut, and keeps everything else in order', () => {
    const text = `demo: tiny\n${W1}${W2}loading weights [##....] 0.1 GB\rloading weights [######] done\nWarning: something else\nanswer stats\n`;
    const want = 'demo: tiny\nloading weights [##....] 0.1 GB\rloading weights [######] done\nWarning: something else\nanswer stats\n';
    // every split point, and byte-by-byte
    for (let cut = 0; cut <= text.length; cut++) expect(filtered([text.slice(0, cut), text.slice(cut)]).out).toBe(want);
    expect(filtered([...text]).out).toBe(want);
  });

  it('passes a partial line on at once unless it could still become a warning', () => {
    const { writes } = filtered(['loading weights [#...] 0.1 GB\r']);
    expect(writes).toEqual(['loading weights [#...] 0.1 GB\r']);
    const f: string[] = [];
    const filter = dawnWarningFilter((s) => f.push(s));
    filter.push('Warning: maxDyn');
    expect(f).toEqual([]); // held: might be Dawn's
    filter.push('amicFoo is not one of them\n');
    expect(f.join('')).toBe('Warning: maxDynamicFoo is not one of them\n');
    filter.push('no newline at the end');
    filter.end();
    expect(f.join('')).toBe('Warning: maxDynamicFoo is not one of them\nno newline at the end');
  });
});
