import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as statements from '../../src/persistence/statements';
import { PERSIST_ARGUMENT_TYPES, SCHEMA_VERSION, type Statement } from '../../src/persistence/statements';

const all = Object.entries(statements).filter((e): e is [string, Statement] => typeof e[1] === 'object' && e[1] !== null && 'text' in e[1]);

describe('statements', () => {
  it('are named from the one SCHEMA_VERSION, each name once (a name must always mean one text)', () => {
    expect(all.length).toBeGreaterThan(10);
    for (const [, s] of all) expect(s.name).toMatch(new RegExp(`^module_cache_s${SCHEMA_VERSION}_[a-z_]+$`));
    expect(new Set(all.map(([, s]) => s.name)).size).toBe(all.length);
  });

  it('call module_cache_persist_fenced with the signature the migrations built (see schema.sql)', () => {
    const schema = readFileSync(path.join(__dirname, '..', '..', 'src', 'persistence', 'schema.sql'), 'utf8');
    const header = /^CREATE OR REPLACE FUNCTION public\.module_cache_persist_fenced\((.*)\)$/m.exec(schema);
    const types = header![1].split(', ').map((argument) => argument.replace(/^p_\w+ /, ''));
    expect(types).toEqual(PERSIST_ARGUMENT_TYPES);
    expect(statements.SCHEMA_CHECK.text).toContain(`module_cache_persist_fenced(${types.join(',')})`);
    expect(statements.PERSIST.text).toContain(`$${types.length}::${types.at(-1)})`);
  });
});
