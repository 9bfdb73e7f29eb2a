/**
 * The scale benchmark's results (bench/results.json, written by bench/scale.ts): their types,
 * the README table made from them and the chart. `npm run bench:scale-report` regenerates the
 * table in docs/benchmarks.md (between `<!-- scale:begin -->` and `<!-- scale:end -->`) and bench/scale.svg
 * from the committed results.json without measuring anything.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { markdownTable } from './report';

export type ScaleMode = 'no-relay' | 'relay';

/** One mode at one process count. Figures that were not measured are null, with `skipped` saying why. */
export interface ScaleRow {
  mode: ScaleMode;
  processes: number;
  /** Propagation latency (invalidate() called → every other process applied it), ms; null with one process (no other process). */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Invalidations measured (after warm-up), and how many never reached every other process. */
  samples: number;
  missing: number;
  /** Pause after each invalidation (and each raw NOTIFY), ms. */
  gapMs: number | null;
  /** Raw baseline: one NOTIFY to `processes` LISTENing pg clients, until all but one (rotating) received it, ms. */
  rawP50Ms: number | null;
  rawP99Ms: number | null;
  /** Table-hit lookups per second, summed over the processes. */
  lookupsPerSecond: number | null;
  /** Raw baseline: the same primary-key SELECT from as many processes with the same pool and concurrency. */
  rawLookupsPerSecond: number | null;
  /** Peak pg_stat_activity rows of the processes (pools and dedicated connections) while measured. */
  backends: number | null;
  /** Of those, dedicated LISTEN connections (one per process without the relay, the relay's one with it). */
  dedicatedBackends: number | null;
  skipped?: string;
}

export interface ScaleResults {
  benchmark: 'scale';
  date: string;
  machine: { cpu: string; cores: number; memoryGiB: number; node: string; platform: string };
  postgres: string;
  maxConnections: number;
  seconds: number;
  settings: {
    processCounts: number[];
    samples: number;
    warmup: number;
    /** Table hits: ours and the raw baseline take turns, this many windows of this many seconds each. */
    lookupRounds: number;
    lookupRoundSeconds: number;
    lookupConcurrency: number;
    poolMax: number;
    hitRows: number;
  };
  results: ScaleRow[];
  /** How each figure is measured. */
  method: string[];
  /** What this run saw besides the figures: clock offsets, anything that missed or looked odd. */
  notes: string[];
}

export const RESULTS_FILE = join(__dirname, 'results.json');
export const CHART_FILE = join(__dirname, 'scale.svg');
export const README_FILE = join(__dirname, '../docs/benchmarks.md');
export const BEGIN = '<!-- scale:begin -->';
export const END = '<!-- scale:end -->';
const CHART_REFERENCE = '![propagation latency against process count](../bench/scale.svg)';

export const MODE_LABEL: Record<ScaleMode, string> = { 'no-relay': 'no relay (a LISTEN connection each)', relay: 'cluster relay' };

export function ms(value: number | null): string {
  if (value === null) return 'n/a';
  if (value < 1) return `${(value * 1000).toFixed(0)} µs`;
  if (value < 1000) return `${value.toFixed(value < 10 ? 2 : 1)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

export function perSecond(value: number | null): string {
  if (value === null) return 'n/a';
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M/s`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} k/s`;
  return `${value.toFixed(0)}/s`;
}

export function ratio(ours: number | null, base: number | null): string {
  if (ours === null || base === null || base === 0) return 'n/a';
  const x = ours / base;
  return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`;
}

/** The markdown that goes between the README markers: the table, the run it came from, the chart. */
export function scaleMarkdown(results: ScaleResults): string {
  const rows = results.results.map((r) => [
    MODE_LABEL[r.mode],
    String(r.processes),
    r.skipped ? `skipped: ${r.skipped}` : r.processes === 1 ? 'n/a (no other process)' : `${ms(r.p50Ms)} / ${ms(r.p99Ms)}`,
    r.processes === 1 || r.skipped ? 'n/a' : `${ms(r.rawP50Ms)} / ${ms(r.rawP99Ms)}`,
    r.processes === 1 || r.skipped ? 'n/a' : `${ratio(r.p50Ms, r.rawP50Ms)} / ${ratio(r.p99Ms, r.rawP99Ms)}`,
    perSecond(r.lookupsPerSecond),
    perSecond(r.rawLookupsPerSecond),
    ratio(r.lookupsPerSecond, r.rawLookupsPerSecond),
    r.backends === null ? 'n/a' : `${r.backends} (${r.dedicatedBackends} dedicated)`,
  ]);
  const m = results.machine;
  return [
    markdownTable(
      [
        'mode',
        'processes',
        'propagation p50 / p99',
        'raw NOTIFY p50 / p99',
        'ratio p50 / p99',
        'table hits/s (all processes)',
        'raw pg PK select/s',
        'ratio',
        'backends (peak)',
      ],
      rows,
    ),
    '',
    `Run of ${results.date.slice(0, 10)}: ${m.cpu}, ${m.cores} cores, Node ${m.node}, PostgreSQL ${results.postgres}, ` +
      `max_connections ${results.maxConnections}; ${results.settings.samples} invalidations per point after ` +
      `${results.settings.warmup} warm-up; table hits for ${results.settings.lookupRounds} × ${results.settings.lookupRoundSeconds} s, ` +
      `${results.settings.lookupConcurrency} in flight per process (pool max ${results.settings.poolMax}), taking turns with the raw baseline; ` +
      `\`npm run bench:scale\` took ${results.seconds.toFixed(0)} s. Method: \`bench/scale.ts\`; all figures in \`bench/results.json\`.`,
    ...(results.notes.length ? ['', ...results.notes.map((n) => `- ${n}`)] : []),
    '',
    CHART_REFERENCE,
  ].join('\n');
}

/** Replaces what lies between the markers in README.md (formatted as `prettier --check` expects). */
export async function writeReadme(results: ScaleResults, file = README_FILE): Promise<void> {
  const readme = readFileSync(file, 'utf8');
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`${file} has no ${BEGIN} … ${END} markers`);
  // Only our block is formatted: the rest of the README is left exactly as it is.
  const prettier = await import('prettier');
  const config = (await prettier.resolveConfig(file)) ?? {};
  const block = (await prettier.format(scaleMarkdown(results), { ...config, parser: 'markdown' })).trim();
  writeFileSync(file, `${readme.slice(0, begin + BEGIN.length)}\n\n${block}\n\n${readme.slice(end)}`);
}

/** results.json as prettier formats JSON (the repository's `prettier --check .` reads it). */
export async function writeResults(results: ScaleResults, file = RESULTS_FILE): Promise<void> {
  const prettier = await import('prettier');
  const config = (await prettier.resolveConfig(file)) ?? {};
  writeFileSync(file, await prettier.format(JSON.stringify(results, null, 2), { ...config, parser: 'json' }));
}

// vega and vega-lite are ESM-only (vega-lite with top-level await, so require(esm) cannot load
// it): a real dynamic import, which the CommonJS output of ts-node would turn into require().
const importEsm = new Function('specifier', 'return import(specifier)') as <T>(specifier: string) => Promise<T>;

interface VegaLite {
  compile(spec: unknown): { spec: unknown };
}
interface Vega {
  parse(spec: unknown): unknown;
  View: new (runtime: unknown, options: { renderer: 'none' }) => { toSVG(): Promise<string>; finalize(): void };
}

/** Propagation latency p50 and p99 against process count: both modes and the raw NOTIFY baseline (vega-lite, rendered headless by vega). */
export async function chartSvg(results: ScaleResults): Promise<string> {
  const points: Array<{ processes: number; series: string; percentile: string; latency: number }> = [];
  const series: Record<ScaleMode, { ours: string; raw: string }> = {
    'no-relay': { ours: MODE_LABEL['no-relay'], raw: 'raw NOTIFY, n clients (no-relay run)' },
    relay: { ours: MODE_LABEL.relay, raw: 'raw NOTIFY, n clients (relay run)' },
  };
  for (const r of results.results) {
    if (r.skipped || r.p50Ms === null || r.p99Ms === null) continue;
    points.push({ processes: r.processes, series: series[r.mode].ours, percentile: 'p50', latency: r.p50Ms });
    points.push({ processes: r.processes, series: series[r.mode].ours, percentile: 'p99', latency: r.p99Ms });
    // The raw baseline is measured in each mode's run, right after ours at that count.
    if (r.rawP50Ms !== null && r.rawP99Ms !== null) {
      points.push({ processes: r.processes, series: series[r.mode].raw, percentile: 'p50', latency: r.rawP50Ms });
      points.push({ processes: r.processes, series: series[r.mode].raw, percentile: 'p99', latency: r.rawP99Ms });
    }
  }
  const counts = [...new Set(points.map((p) => p.processes))].sort((a, b) => a - b);
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      anchor: 'start',
      text: 'Invalidation propagation latency against process count',
      subtitle: [
        'invalidate() called → every other process applied it',
        `${results.machine.cores} cores, PostgreSQL ${results.postgres}, ${results.date.slice(0, 10)}`,
      ],
    },
    width: 560,
    height: 320,
    background: 'white',
    config: { legend: { titleLimit: 400, labelLimit: 400 } },
    data: { values: points },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'processes',
        type: 'quantitative',
        title: 'processes on one database',
        scale: { type: 'log', base: 2, domain: [counts[0] ?? 2, counts[counts.length - 1] ?? 16] },
        axis: { values: counts, format: 'd' },
      },
      y: { field: 'latency', type: 'quantitative', title: 'latency (ms)', scale: { zero: true } },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        scale: {
          domain: [series['no-relay'].ours, series.relay.ours, series['no-relay'].raw, series.relay.raw],
          range: ['#1f77b4', '#e6550d', '#7f7f7f', '#c7c7c7'],
        },
        legend: { orient: 'right' },
      },
      strokeDash: {
        field: 'percentile',
        type: 'nominal',
        title: 'p50 solid, p99 dashed',
        scale: {
          domain: ['p50', 'p99'],
          range: [
            [1, 0],
            [6, 4],
          ],
        },
      },
      shape: {
        field: 'percentile',
        type: 'nominal',
        title: 'p50 solid, p99 dashed',
        scale: { domain: ['p50', 'p99'], range: ['circle', 'triangle-up'] },
      },
      detail: { field: 'percentile' },
      tooltip: [{ field: 'series' }, { field: 'percentile' }, { field: 'processes' }, { field: 'latency', format: '.2f' }],
    },
  };
  const vegaLite = await importEsm<VegaLite>('vega-lite');
  const vega = await importEsm<Vega>('vega');
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Writes the chart and the README table from `results`. */
export async function publish(results: ScaleResults): Promise<void> {
  writeFileSync(CHART_FILE, `${await chartSvg(results)}\n`);
  await writeReadme(results);
}

if (require.main === module) {
  (async () => {
    const results = JSON.parse(readFileSync(RESULTS_FILE, 'utf8')) as ScaleResults;
    await publish(results);
    process.stdout.write(`docs/benchmarks.md (between ${BEGIN} and ${END}) and ${CHART_FILE} regenerated from ${RESULTS_FILE}\n`);
  })().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
