/** The Lua loader: include lines resolved once per script, the key count from the file name. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { keyCountOf, loadScript, resolveIncludes, type FragmentReader } from '../src/lua-include.js';

const reader =
  (files: Record<string, string>): FragmentReader =>
  (name) =>
    files[name];

describe('resolveIncludes', () => {
  it('puts each fragment in place of its include line, nested includes first', () => {
    const read = reader({
      'includes/inner': 'local function inner() return 1 end\n',
      'includes/outer': '--- @include "includes/inner"\nlocal function outer() return inner() + 1 end\n',
    });
    const out = resolveIncludes('main-1.lua', '-- head\n--- @include "includes/outer"\nreturn outer()\n', read);
    expect(out).toBe(
      '-- head\nlocal function inner() return 1 end\nlocal function outer() return inner() + 1 end\nreturn outer()\n',
    );
  });

  it('includes a fragment once per script, however many lines and fragments name it', () => {
    const read = reader({
      'includes/shared': 'local function shared() end',
      'includes/a': '--- @include "includes/shared"\nlocal function a() shared() end',
      'includes/b': '--- @include "includes/shared"\nlocal function b() shared() end',
    });
    const src = '--- @include "includes/a"\n--- @include "includes/b"\n--- @include "includes/shared"\nreturn 1';
    const out = resolveIncludes('main-1.lua', src, read);
    expect(out.match(/local function shared/g)).toHaveLength(1);
    expect(out.indexOf('function shared')).toBeLessThan(out.indexOf('function a'));
    expect(out.indexOf('function a')).toBeLessThan(out.indexOf('function b'));
    expect(out).not.toContain('@include');
    // a cycle ends too: the second mention of a fragment already in is dropped
    const cyclic = reader({
      'includes/x': '--- @include "includes/y"\nX',
      'includes/y': '--- @include "includes/x"\nY',
    });
    expect(resolveIncludes('c-1.lua', '--- @include "includes/x"', cyclic)).toBe('\nY\nX');
    // and every script starts afresh
    expect(resolveIncludes('d-1.lua', '--- @include "includes/shared"', read)).toBe('local function shared() end');
  });

  it('refuses an unknown include, naming it and the script that asked for it', () => {
    const read = reader({ 'includes/a': '--- @include "includes/missing-one"' });
    expect(() => resolveIncludes('grab-6.lua', '--- @include "includes/nope"', read)).toThrow(
      'grab-6.lua: unknown include "includes/nope" (no includes/nope.lua)',
    );
    expect(() => resolveIncludes('grab-6.lua', '--- @include "includes/a"', read)).toThrow(
      'grab-6.lua via includes/a: unknown include "includes/missing-one"',
    );
    expect(() => resolveIncludes('grab-6.lua', '--- @include "../secret"', read)).toThrow(
      '"../secret" is not of the form',
    );
  });

  it('leaves lines that only look like includes alone', () => {
    const src = '-- @include "includes/a"\nlocal s = \'--- @include "includes/a"\'';
    expect(resolveIncludes('s-1.lua', src, () => undefined)).toBe(src);
  });
});

describe('keyCountOf', () => {
  it('reads the key count from <name>-<numKeys>.lua', () => {
    expect(keyCountOf('grab-6.lua')).toBe(6);
    expect(keyCountOf('take-4.lua')).toBe(4);
    expect(keyCountOf('route-2.lua')).toBe(2);
    expect(keyCountOf('moveToFinished-14.lua')).toBe(14);
    expect(keyCountOf('no-keys-0.lua')).toBe(0);
  });

  it('refuses a name without a key count', () => {
    for (const bad of ['grab.lua', 'take-tokens-n.lua', 'grab-6.txt', 'grab-.lua', '6.lua', 'grab-6.lua.bak']) {
      expect(() => keyCountOf(bad), bad).toThrow(`Lua script ${bad}: the name must be <name>-<numKeys>.lua`);
    }
  });
});

describe('loadScript', () => {
  it('loads the real scripts with their fragments in and no include line left', () => {
    for (const [file, keys] of [
      ['grab-6.lua', 6],
      ['take-4.lua', 4],
      ['route-2.lua', 2],
    ] as const) {
      const s = loadScript(file);
      expect(s.numberOfKeys, file).toBe(keys);
      expect(s.lua, file).not.toMatch(/^--- @include/m);
    }
    for (const file of ['grab-6.lua', 'take-4.lua']) {
      const { lua } = loadScript(file);
      expect(lua.match(/local function popReleased\(/g), file).toHaveLength(1);
      expect(lua.match(/local function recordWin\(/g), file).toHaveLength(1);
    }
  });

  it('reads fragments from the includes folder beside the script, and names one that is not there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lua-include-'));
    try {
      mkdirSync(join(dir, 'includes'));
      writeFileSync(join(dir, 'includes', 'one.lua'), 'local function one() return 1 end\n');
      writeFileSync(join(dir, 'ok-1.lua'), '--- @include "includes/one"\nreturn one()\n');
      writeFileSync(join(dir, 'bad-1.lua'), '--- @include "includes/two"\nreturn two()\n');
      writeFileSync(join(dir, 'bad.lua'), 'return 0\n');
      const url = pathToFileURL(`${dir}/`);
      expect(loadScript('ok-1.lua', url)).toEqual({
        numberOfKeys: 1,
        lua: 'local function one() return 1 end\nreturn one()\n',
      });
      expect(() => loadScript('bad-1.lua', url)).toThrow('bad-1.lua: unknown include "includes/two"');
      expect(() => loadScript('bad.lua', url)).toThrow('Lua script bad.lua: the name must be');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
