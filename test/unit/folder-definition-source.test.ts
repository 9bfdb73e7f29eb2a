import { cpSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { FolderDefinitionSource, resolveSpecifier } from '../../sample/folder-definition-source';
import { moduleURLForFile, watchRealmFolder, type RealmWatcher, type RealmWatcherLogger } from '../../sample/realm-watcher';
import { waitFor } from '../support/wait';

const REALM_URL = 'https://cardstack.test/demo/';
const SAMPLE_REALM = path.resolve(__dirname, '../../sample/realms/realm');
const live = () => ({ signal: new AbortController().signal });

function copyOfSampleRealm(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'module-cache-realm-'));
  cpSync(SAMPLE_REALM, dir, { recursive: true });
  return dir;
}

describe('FolderDefinitionSource', () => {
  let rootDir: string;
  let source: FolderDefinitionSource;
  const load = (rel: string) => source.load(REALM_URL + rel, live());

  beforeAll(() => {
    rootDir = copyOfSampleRealm();
    source = new FolderDefinitionSource({ rootDir, realmURL: REALM_URL });
  });
  afterAll(() => rmSync(rootDir, { recursive: true, force: true }));

  it('reports each export with its kind and line', async () => {
    expect((await load('person.ts'))?.definitions).toEqual({
      PersonId: { kind: 'type', line: 3 },
      PersonData: { kind: 'interface', line: 5 },
      Person: { kind: 'class', line: 11 },
    });
    expect((await load('pet.ts'))?.definitions).toMatchObject({ Species: { kind: 'enum' }, Pet: { kind: 'class' } });
    expect((await load('pet-owner.ts'))?.definitions).toMatchObject({
      PetOwner: { kind: 'class' },
      adopt: { kind: 'function' },
      MAX_PETS: { kind: 'const' },
      MIN_AGE: { kind: 'const' }, // destructured declarations export every bound name
      MAX_AGE: { kind: 'const' },
    });
    expect((await load('utils/format.ts'))?.definitions).toMatchObject({ SEPARATOR: { kind: 'const' }, locale: { kind: 'let' } });
    expect((await load('utils/dates.js'))?.definitions).toEqual({ EPOCH: { kind: 'var', line: 6 }, default: { kind: 'default', line: 8 } });
    expect(Object.keys((await load('catalog.gts'))!.definitions)).toEqual(['default']);
  });

  it('reports re-exports with the resolved source and the imported name', async () => {
    const index = await load('index.ts');
    expect(index?.definitions).toEqual({
      Person: { kind: 'reexport', from: `${REALM_URL}person`, imported: 'Person', line: 3 },
      PersonData: { kind: 'reexport', from: `${REALM_URL}person`, imported: 'PersonData', line: 4 },
      PersonId: { kind: 'reexport', from: `${REALM_URL}person`, imported: 'PersonId', line: 4 },
      Animal: { kind: 'reexport', from: `${REALM_URL}pet`, imported: 'Pet', line: 5 },
      Species: { kind: 'reexport', from: `${REALM_URL}pet`, imported: 'Species', line: 5 },
      format: { kind: 'namespace-reexport', from: `${REALM_URL}utils/format`, line: 6 },
      Catalog: { kind: 'reexport', from: `${REALM_URL}catalog.gts`, imported: 'default', line: 8 },
    });
    // `export * from './pet-owner'` contributes no names here, only the dependency.
    expect(index?.deps).toContain(`${REALM_URL}pet-owner`);
  });

  it('resolves relative, ../ and extensionless deps, and leaves out bare packages and dynamic imports', async () => {
    expect((await load('pet.ts'))?.deps).toEqual([`${REALM_URL}person`, `${REALM_URL}pet-owner`]);
    expect((await load('utils/format.ts'))?.deps).toEqual([`${REALM_URL}person`]);
    expect((await load('utils/dates.js'))?.deps).toEqual([`${REALM_URL}utils/format`]);
    expect((await load('catalog.gts'))?.deps).toEqual([
      `${REALM_URL}pet-owner`,
      `${REALM_URL}pet.ts`,
      `${REALM_URL}utils/format`,
      `${REALM_URL}utils/dates.js`,
    ]);
    expect(resolveSpecifier('https://cdn.test/lib.js', `${REALM_URL}a.ts`)).toBe('https://cdn.test/lib.js');
    expect(resolveSpecifier('/shared/x', `${REALM_URL}a.ts`)).toBe('https://cardstack.test/shared/x');
    for (const bare of ['lodash', '@glimmer/tracking', 'node:fs', 'data:text/javascript,1'])
      expect(resolveSpecifier(bare, REALM_URL)).toBeNull();
  });

  it('records local exports, import-then-export and absolute URL imports', async () => {
    writeFileSync(
      path.join(rootDir, 'local-exports.ts'),
      [
        "import Thing, { helper as h } from './thing';",
        "import * as ns from 'https://cdn.test/lib.js';",
        'class Local {}',
        'function f(a: string): void;',
        'function f(a: unknown) {}',
        'export { Local, f, h as helper, ns, Thing as default };',
        "export const é = '😀', { a, b: [c, ...rest] } = { a: 1, b: [2, 3] };",
      ].join('\n'),
    );
    const loaded = await load('local-exports.ts');
    expect(loaded?.definitions).toEqual({
      Local: { kind: 'class', line: 3 },
      f: { kind: 'function', line: 4 },
      helper: { kind: 'reexport', from: `${REALM_URL}thing`, imported: 'helper', line: 1 },
      ns: { kind: 'namespace-reexport', from: 'https://cdn.test/lib.js', line: 2 },
      default: { kind: 'reexport', from: `${REALM_URL}thing`, imported: 'default', line: 1 },
      é: { kind: 'const', line: 7 },
      a: { kind: 'const', line: 7 },
      c: { kind: 'const', line: 7 },
      rest: { kind: 'const', line: 7 },
    });
    expect(loaded?.deps).toEqual([`${REALM_URL}thing`, 'https://cdn.test/lib.js']);
  });

  it('returns null for a missing file, a directory, a non-module file and an extensionless URL', async () => {
    expect(await load('nope.ts')).toBeNull();
    expect(await load('utils')).toBeNull();
    expect(await load('utils/')).toBeNull();
    expect(await load('')).toBeNull();
    expect(await load('person')).toBeNull(); // the lookup tries person.gts, person.ts, ... itself
    writeFileSync(path.join(rootDir, 'notes.md'), '# not a module');
    expect(await load('notes.md')).toBeNull();
  });

  it('returns null for URLs outside the realm and for path traversal', async () => {
    expect(await source.load('https://cardstack.test/other/person.ts', live())).toBeNull();
    expect(await source.load('https://elsewhere.test/demo/person.ts', live())).toBeNull();
    expect(await source.load('not a url', live())).toBeNull();
    const outside = mkdtempSync(path.join(os.tmpdir(), 'module-cache-outside-'));
    try {
      writeFileSync(path.join(outside, 'secret.ts'), 'export const secret = 1;');
      const escape = `../${path.basename(outside)}/secret.ts`;
      for (const attempt of [
        escape.replaceAll('..', '%2e%2e'),
        escape.replaceAll('..', '.%2E'),
        escape.replaceAll('/', '%2F'),
        `utils/..%2F${escape}`,
      ])
        expect(await load(attempt), attempt).toBeNull();
      expect(await load('bad%zzescape.ts')).toBeNull();
      // A symlink inside the realm does not expose a file outside it.
      symlinkSync(path.join(outside, 'secret.ts'), path.join(rootDir, 'link.ts'));
      expect(await load('link.ts')).toBeNull();
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('decodes percent-escapes and ignores query and hash', async () => {
    writeFileSync(path.join(rootDir, 'a b ü.ts'), 'export type T = 1;');
    expect((await load('a%20b%20%C3%BC.ts'))?.definitions).toEqual({ T: { kind: 'type', line: 1 } });
    expect((await load('person.ts?v=2#x'))?.definitions).toHaveProperty('Person');
  });

  it('reports a syntax error as a 422 module error with line and column', async () => {
    expect(await load('broken.ts')).toEqual({
      definitions: {},
      deps: [],
      error: { message: expect.stringMatching(/^SyntaxError: .+ \(broken\.ts:6:1\)$/), status: 422 },
    });
    // A consumer of a broken module parses fine: attaching the dependency's error is the lookup's job.
    expect(await load('uses-broken.ts')).toEqual({
      definitions: { describeBroken: { kind: 'function', line: 5 } },
      deps: [`${REALM_URL}broken`],
    });
  });

  it('preprocesses <template> in class bodies (.gts) and at top level (.gjs) into their exports and imports, on the lines of the file', async () => {
    // A card class whose formats are classes with a <template> body; the bare packages are no dependencies.
    expect(await load('pet-card.gts')).toEqual({
      definitions: { PetCard: { kind: 'class', line: 10 }, isCat: { kind: 'function', line: 31 } },
      deps: [`${REALM_URL}pet`, `${REALM_URL}greeting.gjs`],
    });
    // A template-only component: the top-level <template> is the default export.
    expect(await load('greeting.gjs')).toEqual({ definitions: { default: { kind: 'default', line: 5 } }, deps: [] });
    // A template assigned to a const, and a class component with its template: imports of both files above.
    expect(await load('pet-gallery.gts')).toEqual({
      definitions: { EmptyGallery: { kind: 'const', line: 9 }, default: { kind: 'default', line: 14 } },
      deps: [`${REALM_URL}pet-card.gts`, `${REALM_URL}greeting.gjs`],
    });
  });

  it('keeps the lines of the file as written below multi-line templates, whatever their content', async () => {
    writeFileSync(
      path.join(rootDir, 'templates.gts'),
      [
        "import { on } from '@ember/modifier';", // 1
        "import { Person } from './person';", // 2
        'export const Title = <template>', // 3
        '  <h1 title="`${x}`">ü 😀 {{@title}}</h1>', // 4: a backtick, `${` and non-ASCII inside
        '</template>;', // 5
        '', // 6
        'export class Profile {', // 7
        '  <template>', // 8
        '    <button {{on "click" this.go}}>go</button>', // 9
        '  </template>', // 10
        '  go(): void {}', // 11
        '}', // 12
        '', // 13
        'export type Id = Person["data"]["id"];', // 14
        '<template><Title @title="x" /></template>', // 15: a top-level template, the default export
        "export * as people from './people.gts';", // 16
      ].join('\n'),
    );
    expect(await load('templates.gts')).toEqual({
      definitions: {
        Title: { kind: 'const', line: 3 },
        Profile: { kind: 'class', line: 7 },
        Id: { kind: 'type', line: 14 },
        default: { kind: 'default', line: 15 },
        people: { kind: 'namespace-reexport', from: `${REALM_URL}people.gts`, line: 16 },
      },
      deps: [`${REALM_URL}person`, `${REALM_URL}people.gts`],
    });
  });

  it('reports a broken .gts/.gjs as a 422 module error with the line of the file as written', async () => {
    const errorAt = (file: string, line: number) => ({
      definitions: {},
      deps: [],
      error: {
        message: expect.stringMatching(new RegExp(`^SyntaxError: .+ \\(${file.replace('.', '\\.')}:${line}:\\d+\\)$`)),
        status: 422,
      },
    });
    // A template that is never closed: content-tag refuses it.
    writeFileSync(path.join(rootDir, 'unclosed.gts'), 'export class A {\n  <template>\n    <p>hi</p>\n}\n');
    expect(await load('unclosed.gts')).toEqual(errorAt('unclosed.gts', 4));
    // Broken script around a well-formed template.
    writeFileSync(
      path.join(rootDir, 'broken-script.gts'),
      'export const T = <template>\n  hi\n</template>;\nexport const o = {\n\nexport function f() {}\n',
    );
    expect(await load('broken-script.gts')).toEqual(errorAt('broken-script.gts', 6));
    // Type syntax in a .gjs passes content-tag and fails the JavaScript parse: its line comes back through the source map.
    writeFileSync(path.join(rootDir, 'typed.gjs'), '<template>\n  hi\n</template>\n\nexport const x: number = 1;\n');
    expect(await load('typed.gjs')).toEqual(errorAt('typed.gjs', 5));
  });

  it('rejects with the abort reason when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('timed out'));
    await expect(source.load(`${REALM_URL}person.ts`, { signal: controller.signal })).rejects.toThrow('timed out');
  });

  it('refuses a realm URL that does not end with /', () => {
    expect(() => new FolderDefinitionSource({ rootDir, realmURL: 'https://cardstack.test/demo' })).toThrow(/realmURL/);
  });
});

describe('watchRealmFolder', () => {
  let rootDir: string;
  let watcher: RealmWatcher;
  let changed: string[];
  let barriers = 0;
  const isBarrier = (url: string) => url.startsWith(`${REALM_URL}zz-barrier-`);
  const distinct = (urls: string[]) => [...new Set(urls)];

  /** Waits until `url` has been reported (however long the watcher takes to notice). */
  const reported = (url: string) => waitFor(() => changed.includes(url), 10_000, `${url} to be reported`);

  /**
   * A settle check that knows nothing of the debounce: a module added now is reported after the
   * writes made before it (each file waits out the same debounce, in the order its events arrive),
   * so once it is, those have been reported too, duplicates included. (Chokidar holds deletions
   * back a little to recognise atomic saves: the tests wait for those reports by name first.)
   * Returns what was reported, barriers left out.
   */
  async function settled(): Promise<string[]> {
    const name = `zz-barrier-${++barriers}.ts`;
    writeFileSync(path.join(rootDir, name), 'export {};');
    await reported(`${REALM_URL}${name}`);
    return changed.filter((url) => !isBarrier(url));
  }

  beforeEach(async () => {
    rootDir = copyOfSampleRealm();
    changed = [];
    watcher = watchRealmFolder(rootDir, REALM_URL, (url) => changed.push(url));
    await watcher.ready;
  });
  afterEach(async () => {
    await watcher.close();
    rmSync(rootDir, { recursive: true, force: true });
  });

  it('reports an edited module by its URL, once per burst of writes', async () => {
    // Synchronous writes in one tick reach the watcher as one batch of file-system events: one burst.
    // (That a burst is one call whatever its timing is tested with a fake watcher below.)
    for (let i = 0; i < 3; i++) writeFileSync(path.join(rootDir, 'pet.ts'), `export const version = ${i};`);
    await reported(`${REALM_URL}pet.ts`);
    expect(await settled()).toEqual([`${REALM_URL}pet.ts`]);
    writeFileSync(path.join(rootDir, 'person.ts'), 'export class Person {}');
    await reported(`${REALM_URL}person.ts`);
    expect(await settled()).toEqual([`${REALM_URL}pet.ts`, `${REALM_URL}person.ts`]);
  });

  it('reports added and deleted modules, nested and with characters that need escaping', async () => {
    mkdirSync(path.join(rootDir, 'new dir'));
    writeFileSync(path.join(rootDir, 'new dir', 'späť #1.gts'), 'export const x = 1;');
    const added = `${REALM_URL}new%20dir/${encodeURIComponent('späť #1.gts')}`;
    await reported(added);
    expect(distinct(await settled())).toEqual([added]);
    // The URL the watcher reports is the one the source loads the file by.
    const source = new FolderDefinitionSource({ rootDir, realmURL: REALM_URL });
    expect((await source.load(added, live()))?.definitions).toEqual({ x: { kind: 'const', line: 1 } });
    unlinkSync(path.join(rootDir, 'utils', 'format.ts'));
    await reported(`${REALM_URL}utils/format.ts`);
    expect(distinct(await settled())).toEqual([added, `${REALM_URL}utils/format.ts`]);
  });

  it('reports an atomic save (write a temp file, rename it over the module) as a change of the module', async () => {
    writeFileSync(path.join(rootDir, 'pet.ts.tmp'), 'export class Pet {}');
    renameSync(path.join(rootDir, 'pet.ts.tmp'), path.join(rootDir, 'pet.ts'));
    await reported(`${REALM_URL}pet.ts`);
    expect(distinct(await settled())).toEqual([`${REALM_URL}pet.ts`]);
  });

  it('ignores files that are not modules', async () => {
    writeFileSync(path.join(rootDir, 'notes.md'), 'hello');
    writeFileSync(path.join(rootDir, 'person.ts'), 'export class Person {}');
    await reported(`${REALM_URL}person.ts`);
    expect(distinct(await settled())).toEqual([`${REALM_URL}person.ts`]);
  });
});

describe('watchRealmFolder with a fake file watcher and fake timers', () => {
  /** Stands in for chokidar's FSWatcher: the test emits its events. */
  class FakeFileWatcher extends EventEmitter {
    closed = false;
    async close(): Promise<void> {
      this.closed = true;
    }
  }
  const file = (rel: string) => path.join('/realm', rel);

  afterEach(() => {
    vi.useRealTimers();
    vi.doUnmock('chokidar');
    vi.resetModules();
  });

  /** The sample's watchRealmFolder over a fake chokidar, its debounce on fake timers; `calls` records onChange. */
  async function watchFake(onChange: (url: string) => void = () => undefined, logger?: RealmWatcherLogger) {
    const fake = new FakeFileWatcher();
    vi.doMock('chokidar', () => ({ watch: () => fake }));
    vi.resetModules();
    const { watchRealmFolder: watchWithFake } = await import('../../sample/realm-watcher');
    vi.useFakeTimers();
    const calls: string[] = [];
    const watcher = watchWithFake(
      '/realm',
      REALM_URL,
      (url) => {
        calls.push(url);
        onChange(url);
      },
      logger,
    );
    fake.emit('ready');
    await watcher.ready;
    return { fake, watcher, calls };
  }

  it('turns a burst of events for one file into one call per file, after the burst, whatever the debounce duration', async () => {
    const { fake, calls } = await watchFake();
    for (let i = 0; i < 5; i++) fake.emit('all', 'change', file('pet.ts'));
    fake.emit('all', 'add', file('person.ts'));
    fake.emit('all', 'unlink', file('person.ts'));
    // Not modules, or not a file event: never reported.
    fake.emit('all', 'change', file('notes.md'));
    fake.emit('all', 'addDir', file('dir.ts'));
    expect(calls).toEqual([]); // nothing while the burst may go on
    vi.runAllTimers();
    expect(calls).toEqual([`${REALM_URL}pet.ts`, `${REALM_URL}person.ts`]);
    // The next burst of the same file is reported again.
    fake.emit('all', 'change', file('pet.ts'));
    vi.runAllTimers();
    expect(calls).toEqual([`${REALM_URL}pet.ts`, `${REALM_URL}person.ts`, `${REALM_URL}pet.ts`]);
  });

  it('drops a pending burst on close, and survives a consumer that throws', async () => {
    const warnings: string[] = [];
    const { fake, watcher, calls } = await watchFake(
      (url) => {
        if (url.endsWith('bad.ts')) throw new Error('consumer bug');
      },
      { warn: (message) => warnings.push(message) },
    );
    fake.emit('all', 'change', file('bad.ts'));
    vi.runAllTimers();
    expect(warnings).toEqual([expect.stringMatching(/onChange\(.*bad\.ts\) threw: consumer bug/)]);
    fake.emit('all', 'change', file('pet.ts'));
    await watcher.close();
    vi.runAllTimers();
    expect(calls).toEqual([`${REALM_URL}bad.ts`]);
    expect(fake.closed).toBe(true);
  });
});

describe('moduleURLForFile', () => {
  it('maps files to the URLs a client would request, and refuses paths outside the root', () => {
    expect(moduleURLForFile('/r', REALM_URL, '/r/utils/format.ts')).toBe(`${REALM_URL}utils/format.ts`);
    expect(moduleURLForFile('/r', REALM_URL, '/r/a b@c.ts')).toBe(new URL('a b@c.ts', REALM_URL).href);
    expect(moduleURLForFile('/r', REALM_URL, '/r/100%?#.ts')).toBe(`${REALM_URL}100%25%3F%23.ts`);
    expect(moduleURLForFile('/r', REALM_URL, '/r/x:y.ts')).toBe(`${REALM_URL}x:y.ts`);
    expect(moduleURLForFile('/r', REALM_URL, '/other/a.ts')).toBeNull();
    expect(moduleURLForFile('/r', REALM_URL, '/r')).toBeNull();
  });
});
