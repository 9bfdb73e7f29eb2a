/**
 * `npm run bench`: runs every benchmark in its own process (each with its own database and
 * cleanup), one after the other, then prints one markdown table of all results for docs/benchmarks.md
 * and the machine it ran on. `npm run bench -- memory table` runs only those.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { markdownTable, type BenchResult } from './report';

const BENCHMARKS: Array<{ name: string; gc?: boolean }> = [
  { name: 'memory' },
  { name: 'table' },
  { name: 'invalidation-latency' },
  { name: 'fan-out' },
  { name: 'burst' },
  { name: 'edges' },
  { name: 'batch-notify' },
  { name: 'coalescing' },
  { name: 'generations', gc: true },
  { name: 'reconnect' },
  { name: 'replay' },
  { name: 'scale' },
  { name: 'strong' },
  { name: 'staleness' },
];

function run(name: string, gc: boolean, resultsFile: string): Promise<number | null> {
  const args = [...(gc ? ['--expose-gc'] : []), '-r', 'ts-node/register/transpile-only', join(__dirname, `${name}.ts`)];
  const child = spawn(process.execPath, args, {
    stdio: 'inherit',
    env: { ...process.env, BENCH_RESULTS: resultsFile, TS_NODE_PROJECT: join(__dirname, '../tsconfig.json') },
  });
  // Ctrl-C reaches the child through the terminal; it cleans up and exits.
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const selected = only.length ? BENCHMARKS.filter((b) => only.includes(b.name)) : BENCHMARKS;
  if (selected.length === 0) throw new Error(`unknown benchmark(s) ${only.join(', ')}; known: ${BENCHMARKS.map((b) => b.name).join(', ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'module-cache-bench-'));
  const resultsFile = join(dir, 'results.jsonl');
  const started = performance.now();
  const failed: string[] = [];
  let interrupted = false;
  process.on('SIGINT', () => (interrupted = true));
  try {
    for (const [i, { name, gc }] of selected.entries()) {
      if (interrupted) break;
      const elapsed = ((performance.now() - started) / 1000).toFixed(0);
      process.stdout.write(`\n[${i + 1}/${selected.length}] ${name} (${elapsed} s elapsed)`);
      const code = await run(name, gc === true, resultsFile);
      if (code !== 0) failed.push(name);
    }
    const results: BenchResult[] = (() => {
      try {
        return readFileSync(resultsFile, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as BenchResult);
      } catch {
        return [];
      }
    })();
    const seconds = (performance.now() - started) / 1000;
    const rows = results.flatMap((r) =>
      (r.summary ?? r.rows).map((row) => [r.benchmark, row.measure, row.ours, row.baseline, row.ratio, row.goal]),
    );
    const pg = results.find((r) => r.serverVersion)?.serverVersion ?? 'n/a';
    const cpu = cpus();
    process.stdout.write(`\n\n## All results (${seconds.toFixed(0)} s)\n\n`);
    process.stdout.write(`${markdownTable(['benchmark', 'measure', 'ours', 'baseline (same run)', 'ratio', 'goal'], rows)}\n\n`);
    process.stdout.write(
      `Machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, Node ${process.version}, PostgreSQL ${pg}` +
        `${process.env.DATABASE_URL ? ' (DATABASE_URL)' : ' (embedded)'}; \`npm run bench\` took ${seconds.toFixed(0)} s.\n`,
    );
    if (failed.length) process.stdout.write(`\nFailed: ${failed.join(', ')}\n`);
    process.exitCode = failed.length || interrupted ? 1 : 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
