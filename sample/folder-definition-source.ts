import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { parseSync } from 'oxc-parser';
import type { BindingPattern, ExportNamedDeclaration, ModuleExportName, Program, TSTypeName } from 'oxc-parser';
import type { DefinitionSource, DefinitionSourceContext, LoadedModule } from '../src';
import { preprocessTemplates, type Position } from './template-tags';

/**
 * The files this source treats as modules, and the dialect each is parsed as. `.gts`/`.gjs` go
 * through content-tag first (see template-tags.ts), which turns their `<template>` blocks into TS/JS.
 */
export const MODULE_EXTENSIONS: Readonly<Record<string, 'ts' | 'js'>> = {
  '.ts': 'ts',
  '.gts': 'ts',
  '.mts': 'ts',
  '.js': 'js',
  '.gjs': 'js',
  '.mjs': 'js',
};

export type ExportKind =
  | 'class'
  | 'function'
  | 'const'
  | 'let'
  | 'var'
  | 'type'
  | 'interface'
  | 'enum'
  | 'namespace'
  | 'default'
  | 'reexport'
  | 'namespace-reexport';

export interface ExportDefinition {
  kind: ExportKind;
  /** 1-based line of the local declaration, or of the export statement when there is none. */
  line?: number;
  /** Re-exports: the resolved URL of a relative or absolute source, a bare specifier as written. */
  from?: string;
  /** Named re-exports: the name the source module exports it under. */
  imported?: string;
}

export interface FolderDefinitionSourceOptions {
  rootDir: string;
  /** The URL that `rootDir` is served at; must end with '/'. */
  realmURL: string;
}

type Local = Omit<ExportDefinition, 'line'> & { line: number };
const NOT_THERE = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'ELOOP', 'ENAMETOOLONG']);

/** A DefinitionSource over a folder of TS/JS modules: the definitions are a module's exports. */
export class FolderDefinitionSource implements DefinitionSource {
  private readonly rootDir: string;
  private readonly realmURL: string;

  constructor({ rootDir, realmURL }: FolderDefinitionSourceOptions) {
    if (!URL.canParse(realmURL) || !realmURL.endsWith('/'))
      throw new Error(`realmURL must be an absolute URL ending with '/': ${realmURL}`);
    this.rootDir = path.resolve(rootDir);
    // Compare against the parser's canonical form, which is the form moduleURLs arrive in.
    this.realmURL = new URL(realmURL).href;
  }

  async load(moduleURL: string, { signal }: Pick<DefinitionSourceContext, 'signal'>): Promise<LoadedModule | null> {
    signal.throwIfAborted();
    const file = await this.fileFor(moduleURL);
    if (!file) return null;
    let text: string;
    try {
      text = await readFile(file, { encoding: 'utf8', signal });
    } catch (e) {
      if (NOT_THERE.has((e as NodeJS.ErrnoException).code ?? '')) return null; // a directory, or deleted since realpath
      throw e;
    }
    signal.throwIfAborted(); // parsing is the expensive, synchronous part: don't start it for nobody
    return parseModule(text, file, moduleURL, path.relative(this.rootDir, file));
  }

  /** The file a module URL names, or null when it names none inside rootDir. */
  private async fileFor(moduleURL: string): Promise<string | null> {
    if (!URL.canParse(moduleURL)) return null;
    const url = new URL(moduleURL); // resolves '..' and '%2e%2e' segments, so such URLs leave the realm prefix
    url.search = url.hash = '';
    if (!url.href.startsWith(this.realmURL)) return null;
    const segments: string[] = [];
    for (const raw of url.href.slice(this.realmURL.length).split('/')) {
      let segment: string;
      try {
        segment = decodeURIComponent(raw);
      } catch {
        return null; // malformed percent-escape: no file can have this name
      }
      // A decoded '/' or '\' would turn one URL segment into several path segments (`..%2F..%2Fetc`).
      if (segment === '' || segment === '.' || segment === '..' || ['/', '\\', '\0'].some((c) => segment.includes(c))) return null;
      segments.push(segment);
    }
    const candidate = path.join(this.rootDir, ...segments);
    if (!(path.extname(candidate) in MODULE_EXTENSIONS)) return null;
    try {
      // realpath on both sides: a symlink inside the realm must not expose a file outside it.
      const [root, real] = await Promise.all([realpath(this.rootDir), realpath(candidate)]);
      const rel = path.relative(root, real);
      return rel && !rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel) ? real : null;
    } catch (e) {
      if (NOT_THERE.has((e as NodeJS.ErrnoException).code ?? '')) return null;
      throw e;
    }
  }
}

/** Files with `<template>` blocks (the Glimmer/Ember template tag), preprocessed by content-tag. */
const TEMPLATE_EXTENSIONS = new Set(['.gts', '.gjs']);

function parseModule(text: string, file: string, moduleURL: string, displayPath: string): LoadedModule {
  const preprocessed = TEMPLATE_EXTENSIONS.has(path.extname(file)) ? preprocessTemplates(text, displayPath) : { code: text };
  if ('error' in preprocessed) return syntaxError(preprocessed.error.message, displayPath, preprocessed.error.at);
  const { code, original = (at: Position) => at } = preprocessed;
  const result = parseSync(file, code, { lang: MODULE_EXTENSIONS[path.extname(file)], sourceType: 'module' });
  // Positions are reported in the file as written: through content-tag's source map when it rewrote the code.
  const lineOf = lineLocator(code);
  const positionOf = (offset: number) => original({ line: lineOf(offset), column: columnOf(code, offset) });
  const fatal = result.errors.find((e) => e.severity === 'Error');
  if (fatal) return syntaxError(fatal.message, displayPath, fatal.labels[0] && positionOf(fatal.labels[0].start));
  return extract(result.program, moduleURL, (offset) => positionOf(offset).line);
}

function syntaxError(message: string, displayPath: string, at: Position | undefined): LoadedModule {
  const where = at ? ` (${displayPath}:${at.line}:${at.column})` : '';
  return { definitions: {}, deps: [], error: { message: `SyntaxError: ${message}${where}`, status: 422 } };
}

function extract(program: Program, moduleURL: string, lineOf: (offset: number) => number): LoadedModule {
  const deps = new Set<string>();
  // Type-only imports count too: a dependency's types can change what a consumer computes to.
  const sourceOf = (spec: string) => {
    const url = resolveSpecifier(spec, moduleURL);
    if (url) deps.add(url);
    return url ?? spec;
  };
  // First binding wins everywhere: for overloads that is the first signature.
  const firstWins = <T>(map: Map<string, T>, name: string, def: T) => map.has(name) || map.set(name, def);
  // Locals first, so that `export { x }` anywhere in the file can report x's kind and line.
  const locals = new Map<string, Local>();
  for (const node of program.body) {
    for (const [name, def] of bindings(node, sourceOf, lineOf)) firstWins(locals, name, def);
  }
  const exports = new Map<string, ExportDefinition>();
  for (const node of program.body) {
    if (node.type === 'ExportNamedDeclaration') {
      if (node.declaration) for (const [name, def] of bindings(node.declaration, sourceOf, lineOf)) firstWins(exports, name, def);
      const from = node.source ? sourceOf(node.source.value) : undefined;
      for (const s of node.specifiers) {
        const [local, line] = [nameOf(s.local), lineOf(s.start)];
        const def: ExportDefinition =
          from !== undefined ? { kind: 'reexport', from, imported: local, line } : (locals.get(local) ?? { kind: 'const', line });
        firstWins(exports, nameOf(s.exported), def); // (an undeclared local is invalid code anyway)
      }
    } else if (node.type === 'ExportDefaultDeclaration') firstWins(exports, 'default', { kind: 'default', line: lineOf(node.start) });
    else if (node.type === 'ExportAllDeclaration') {
      const from = sourceOf(node.source.value);
      // `export * from` adds names only the source module knows: it stays a dependency, not a definition.
      if (node.exported) firstWins(exports, nameOf(node.exported), { kind: 'namespace-reexport', from, line: lineOf(node.start) });
    }
  }
  return { definitions: Object.fromEntries(exports), deps: [...deps] };
}

type Bindable = Program['body'][number] | NonNullable<ExportNamedDeclaration['declaration']>;

/** The names a top-level statement binds; imports (plain or `import x = require()`) also register their dependency. */
function bindings(node: Bindable, sourceOf: (spec: string) => string, lineOf: (offset: number) => number): [string, Local][] {
  const line = lineOf(node.start);
  switch (node.type) {
    case 'ExportNamedDeclaration':
      return node.declaration ? bindings(node.declaration, sourceOf, lineOf) : [];
    case 'ImportDeclaration': {
      const from = sourceOf(node.source.value);
      return node.specifiers.map((s) => {
        if (s.type === 'ImportNamespaceSpecifier') return [s.local.name, { kind: 'namespace-reexport', from, line: lineOf(s.start) }];
        const imported = s.type === 'ImportDefaultSpecifier' ? 'default' : nameOf(s.imported);
        return [s.local.name, { kind: 'reexport', from, imported, line: lineOf(s.start) }];
      });
    }
    case 'ClassDeclaration':
    case 'FunctionDeclaration':
    case 'TSDeclareFunction':
      return node.id ? [[node.id.name, { kind: node.type === 'ClassDeclaration' ? 'class' : 'function', line }]] : [];
    case 'VariableDeclaration': {
      const kind = node.kind;
      if (kind !== 'const' && kind !== 'let' && kind !== 'var') return []; // `using` cannot be exported
      return node.declarations.flatMap((d) => boundNames(d.id).map((name): [string, Local] => [name, { kind, line: lineOf(d.start) }]));
    }
    case 'TSTypeAliasDeclaration':
      return [[node.id.name, { kind: 'type', line }]];
    case 'TSInterfaceDeclaration':
      return [[node.id.name, { kind: 'interface', line }]];
    case 'TSEnumDeclaration':
      return [[node.id.name, { kind: 'enum', line }]];
    case 'TSModuleDeclaration':
      if (node.id.type === 'Literal') return []; // `declare module 'x'` binds no name
      return [[node.id.type === 'Identifier' ? node.id.name : leftmost(node.id), { kind: 'namespace', line }]];
    case 'TSImportEqualsDeclaration': {
      const ref = node.moduleReference;
      if (ref.type !== 'TSExternalModuleReference') return [[node.id.name, { kind: 'namespace', line }]];
      return [[node.id.name, { kind: 'namespace-reexport', from: sourceOf(ref.expression.value), line }]];
    }
    default:
      return [];
  }
}

function boundNames(p: BindingPattern): string[] {
  switch (p.type) {
    case 'Identifier':
      return [p.name];
    case 'AssignmentPattern':
      return boundNames(p.left);
    case 'ArrayPattern':
      return p.elements.flatMap((e) => (e === null ? [] : boundNames(e.type === 'RestElement' ? e.argument : e)));
    case 'ObjectPattern':
      return p.properties.flatMap((e) => boundNames(e.type === 'RestElement' ? e.argument : e.value));
  }
}

function leftmost(q: TSTypeName): string {
  return q.type === 'Identifier' ? q.name : q.type === 'TSQualifiedName' ? leftmost(q.left) : 'this';
}

const nameOf = (n: ModuleExportName) => (n.type === 'Literal' ? n.value : n.name);

/**
 * A dependency URL when the specifier is a URL reference in the sense of the HTML module resolution
 * rule ('./', '../', '/', or an absolute http(s) URL); null for bare package names, node:, data: etc.
 */
export function resolveSpecifier(spec: string, moduleURL: string): string | null {
  if (spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('/')) return new URL(spec, moduleURL).href;
  if (URL.canParse(spec) && ['http:', 'https:'].includes(new URL(spec).protocol)) return new URL(spec).href;
  return null;
}

/** oxc-parser reports UTF-16 offsets (what JS string indexes use), so line starts come from the string. */
function lineLocator(text: string): (offset: number) => number {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
}

const columnOf = (text: string, offset: number) => offset - (text.lastIndexOf('\n', offset - 1) + 1) + 1;
