/**
 * Reads the Lua scripts: a script's `--- @include "includes/<name>"` lines (as in BullMQ's
 * commands) are replaced by lua/includes/<name>.lua, so a step two scripts take (pop the next
 * packet, write a win) is written once, and the key count comes from the file name.
 */
import { existsSync, readFileSync } from 'node:fs';

/** Where the scripts are, from src/ and from dist/ alike (the .lua files are not copied). */
export const LUA_DIR = new URL('../src/lua/', import.meta.url);

const INCLUDE_LINE = /^--- @include "([^"]*)"[ \t]*$/gm;
/** Fragments live in includes/ only: no path that climbs out of the script folder. */
const INCLUDE_NAME = /^includes\/[a-z0-9]+(?:-[a-z0-9]+)*$/;
/** `<camelName>-<numKeys>.lua`; take-tokens-n.lua (a key count given per call) is not one. */
const SCRIPT_FILE = /^[a-z][A-Za-z0-9]*(?:-[a-z][A-Za-z0-9]*)*-(\d+)\.lua$/;

/** Fragment source by include name (e.g. "includes/pop-released"); undefined when there is none. */
export type FragmentReader = (name: string) => string | undefined;

/**
 * Replaces each include line of `source` by its fragment, fragments' own includes too. A
 * fragment comes in once per script, where it is first included (a local function must be
 * defined before the code that calls it); any later line naming it is dropped. An unknown
 * include throws, naming it and the script.
 */
export function resolveIncludes(script: string, source: string, read: FragmentReader): string {
  const included = new Set<string>();
  const expand = (text: string, from: string): string =>
    text.replace(INCLUDE_LINE, (_line, name: string) => {
      if (!INCLUDE_NAME.test(name)) {
        throw new Error(`${from}: include "${name}" is not of the form "includes/<kebab-name>"`);
      }
      if (included.has(name)) return '';
      included.add(name);
      const fragment = read(name);
      if (fragment === undefined) throw new Error(`${from}: unknown include "${name}" (no ${name}.lua)`);
      return expand(fragment.replace(/\n$/, ''), `${script} via ${name}`);
    });
  return expand(source, script);
}

/** The key count a script's file name gives: `grab-6.lua` -> 6; any other name throws. */
export function keyCountOf(file: string): number {
  const m = SCRIPT_FILE.exec(file);
  if (!m) throw new Error(`Lua script ${file}: the name must be <name>-<numKeys>.lua`);
  return Number(m[1]);
}

/** A script ready for ioredis defineCommand. */
export interface LoadedScript {
  numberOfKeys: number;
  lua: string;
}

/** Reads `file` from `dir`, its includes resolved, with the key count of its name. */
export function loadScript(file: string, dir: URL = LUA_DIR): LoadedScript {
  const numberOfKeys = keyCountOf(file);
  const read: FragmentReader = (name) => {
    const url = new URL(`${name}.lua`, dir);
    return existsSync(url) ? readFileSync(url, 'utf8') : undefined;
  };
  return { numberOfKeys, lua: resolveIncludes(file, readFileSync(new URL(file, dir), 'utf8'), read) };
}
