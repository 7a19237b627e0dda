import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // GPU tests share one software adapter and two cores: run files one at a time.
    fileParallelism: false,
    pool: 'forks',
  },
});
