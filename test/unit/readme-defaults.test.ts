import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/defaults';

/**
 * The options reference (docs/options.md; the README's table is its summary) must say what DEFAULTS says. The list's convention: one bullet per option
 * (or a few options sharing one), each written `name` (`default`, note…): text; the listener's
 * fields are the bullets nested under `listener`.
 */

/** Module-definition extras: documented with the options, but not options of the schema. */
const EXTRAS = new Set(['isGlobal', 'dataSourceName']);

function optionsSection(readme: string): string {
  const start = readme.indexOf('\n## Options\n');
  const next = readme.indexOf('\n## ', start + 1);
  const end = next < 0 ? readme.length : next;
  if (start < 0) throw new Error('docs/options.md has no "## Options" section');
  return readme.slice(start, end);
}

/** Each bullet as its indent and its text, continuation lines joined. */
function bullets(section: string): Array<{ nested: boolean; text: string }> {
  const out: Array<{ nested: boolean; text: string }> = [];
  for (const line of section.split('\n')) {
    const bullet = /^( *)- (.*)$/.exec(line);
    if (bullet) out.push({ nested: bullet[1].length > 0, text: bullet[2] });
    else if (/^ +\S/.test(line) && out.length) out[out.length - 1].text += ` ${line.trim()}`;
    else if (line.trim() === '' || !out.length) continue;
    else break; // prose after the list ends it
  }
  return out;
}

/** A default as README writes it (`10000`, `'cached'`, `module_cache_acked`, `{ maxEntries: 10000 }`) as a value. */
function valueOf(written: string): unknown {
  const json = written.replace(/'([^']*)'/g, (_, s: string) => JSON.stringify(s)).replace(/([{,]\s*)([A-Za-z_]\w*)\s*:/g, '$1"$2":');
  try {
    return JSON.parse(json);
  } catch {
    return written; // a bare word: a string
  }
}

function documentedDefaults(readme: string): Map<string, unknown> {
  const found = new Map<string, unknown>();
  let parent = '';
  for (const { nested, text } of bullets(optionsSection(readme))) {
    if (!nested) parent = /^`(\w+)`/.exec(text)?.[1] ?? '';
    for (const [, name, written] of text.matchAll(/`(\w+)` \(`([^`]+)`/g)) {
      if (EXTRAS.has(name)) continue;
      const key = nested ? `${parent}.${name}` : name;
      if (found.has(key)) throw new Error(`README documents a default for ${key} twice`);
      found.set(key, valueOf(written));
    }
  }
  return found;
}

/** Every option default in DEFAULTS, by its option path (the listener's fields as `listener.x`). */
function optionDefaults(): Map<string, unknown> {
  const { listener, strongHeartbeat: _strong, clusterRelay: _relay, ...top } = DEFAULTS;
  return new Map<string, unknown>([
    ...Object.entries(top),
    ...Object.entries(listener).map(([k, v]): [string, unknown] => [`listener.${k}`, v]),
  ]);
}

describe("docs/options.md's options list", () => {
  const readme = readFileSync(join(__dirname, '../../docs/options.md'), 'utf8');
  const documented = documentedDefaults(readme);

  it('is found and parsed', () => {
    expect(documented.size).toBeGreaterThan(20);
    expect(documented.get('listener.reconnect')).toEqual({ initialDelayMs: 100, maxDelayMs: 10_000 });
  });

  it.each([...optionDefaults()])('documents %s with its default', (key, value) => {
    expect(documented.has(key), `README's options list has no default for ${key}`).toBe(true);
    expect(documented.get(key)).toEqual(value);
  });

  it('documents no default that DEFAULTS does not have', () => {
    expect([...documented.keys()].filter((key) => !optionDefaults().has(key))).toEqual([]);
  });

  it("states strong mode's heartbeat default", () => {
    const [, interval, timeout] = /defaults the heartbeat to (\d+) s \+ (\d+) s/.exec(optionsSection(readme).replace(/\s+/g, ' ')) ?? [];
    expect({ intervalMs: Number(interval) * 1000, timeoutMs: Number(timeout) * 1000 }).toEqual(DEFAULTS.strongHeartbeat);
  });
});
