import { Preprocessor } from 'content-tag';

/** A 1-based position in a file. */
export interface Position {
  line: number;
  column: number;
}

export type Preprocessed =
  /** `original` maps a position of `code` back to the file as written; absent when `code` is the file as written. */
  { code: string; original?: (at: Position) => Position } | { error: { message: string; at?: Position } };

// One instance for the process: it is the wasm module's parser, and stateless between calls.
const preprocessor = new Preprocessor();

/**
 * A `.gts`/`.gjs` module as plain TS/JS, through content-tag (what Ember's build uses): a
 * `<template>` in a class body becomes a static block, one in an expression a `template(…)` call,
 * and a top-level one the default export. Its output is reprinted (swc codegen), so its lines are
 * not the file's: the source map it returns maps them back. A file without templates is returned
 * as written, so its positions need no mapping at all.
 */
export function preprocessTemplates(text: string, displayPath: string): Preprocessed {
  try {
    if (preprocessor.parse(text, { filename: displayPath }).length === 0) return { code: text };
    const { code, map } = preprocessor.process(text, { filename: displayPath });
    return { code, original: originalPositions((JSON.parse(map) as { mappings: string }).mappings) };
  } catch (error) {
    return { error: describeError(error) };
  }
}

/**
 * content-tag throws an Error whose message is `Parse Error at FILE:LINE:COL: LINE:COL` (positions
 * of the file as written) and whose `source_code` is a rendered diagnostic starting `× <reason>`.
 */
function describeError(error: unknown): { message: string; at?: Position } {
  const message = error instanceof Error ? error.message : String(error);
  const at = /:(\d+):(\d+): \d+:\d+$/.exec(message);
  const reason = /×\s*(.+)/.exec(String((error as { source_code?: unknown })?.source_code ?? ''))?.[1]?.trim();
  return { message: reason ?? message, at: at ? { line: Number(at[1]), column: Number(at[2]) } : undefined };
}

type Segment = [generatedColumn: number, originalLine: number, originalColumn: number];

/** A position of the generated code → the position its source map segment points at (0-based inside). */
function originalPositions(mappings: string): (at: Position) => Position {
  const lines = decodeMappings(mappings);
  return ({ line, column }) => {
    // The last segment at or before the position; a line without any (the injected import) borrows the previous line's last.
    for (let l = Math.min(line - 1, lines.length - 1); l >= 0; l--) {
      const segments = lines[l];
      if (segments.length === 0) continue;
      const onLine = l === line - 1;
      const segment = (onLine && segments.findLast(([c]) => c <= column - 1)) || segments[onLine ? 0 : segments.length - 1];
      const offset = onLine ? Math.max(0, column - 1 - segment[0]) : 0;
      return { line: segment[1] + 1, column: segment[2] + offset + 1 };
    }
    return { line: 1, column: 1 };
  };
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Source map v3 `mappings` (one source): per generated line, its segments in column order. */
function decodeMappings(mappings: string): Segment[][] {
  let originalLine = 0;
  let originalColumn = 0;
  return mappings.split(';').map((line) => {
    let generatedColumn = 0; // relative within a line; the original fields are relative across the whole map
    const segments: Segment[] = [];
    for (const raw of line.split(',')) {
      if (!raw) continue;
      const fields = decodeVLQ(raw);
      generatedColumn += fields[0];
      if (fields.length < 4) continue; // a segment that maps to no source
      originalLine += fields[2];
      originalColumn += fields[3];
      segments.push([generatedColumn, originalLine, originalColumn]);
    }
    return segments;
  });
}

function decodeVLQ(segment: string): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const char of segment) {
    const digit = BASE64.indexOf(char);
    value += (digit & 31) * 2 ** shift;
    if (digit & 32) shift += 5;
    else {
      values.push(value % 2 ? -(value - 1) / 2 : value / 2);
      value = shift = 0;
    }
  }
  return values;
}
