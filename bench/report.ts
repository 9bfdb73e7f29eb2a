/** The result rows every benchmark produces, and the markdown they are printed as (no heavy imports: run-all uses it). */

export interface BenchRow {
  measure: string;
  ours: string;
  baseline: string;
  ratio: string;
  goal: string;
}

export interface BenchResult {
  benchmark: string;
  rows: BenchRow[];
  /** Rows worth a line in the docs/benchmarks.md table (default: all). */
  summary?: BenchRow[];
  notes?: string[];
  serverVersion?: string;
  seconds?: number;
}

export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
