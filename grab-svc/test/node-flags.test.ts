import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { GRAB_NODE_FLAGS } from '../src/node-flags.js';

it('npm start runs grab-svc with the V8 flags the benchmarks measured', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    scripts: Record<string, string>;
  };
  expect(pkg.scripts['start']).toBe(`node ${GRAB_NODE_FLAGS.join(' ')} dist/main.js`);
});
