import { describe, expect, it } from 'vitest';
import { Generations } from '../../src/local/generations';
import { MemoryTier } from '../../src/local/memory-tier';
import { UnknownRealmError, type ModuleCacheEntry } from '../../src';
import {
  aliasOf,
  candidateURLs,
  canonicalURL,
  MAX_EXPLICIT_REALMS,
  normaliseDependency,
  RealmRegistry,
  urlVariants,
} from '../../src/config/urls';

const EXT = ['.gts', '.ts', '.gjs', '.js'];

describe('urls', () => {
  it('canonicalises: strips query and hash, rejects non-http', () => {
    expect(canonicalURL('https://a.test/r/x.ts?v=1#y')).toBe('https://a.test/r/x.ts');
    expect(() => canonicalURL('file:///etc/passwd')).toThrow(/http/);
    expect(() => canonicalURL('/relative')).toThrow(/absolute/);
  });

  it('aliases, candidates and variants', () => {
    expect(aliasOf('https://a.test/r/x.gts', EXT)).toBe('https://a.test/r/x');
    expect(aliasOf('https://a.test/r/x.json', EXT)).toBe('https://a.test/r/x.json');
    expect(candidateURLs('https://a.test/r/x.ts', EXT)).toEqual(['https://a.test/r/x.ts']);
    expect(candidateURLs('https://a.test/r/x', EXT)).toEqual([...EXT.map((e) => `https://a.test/r/x${e}`), 'https://a.test/r/x']);
    expect(urlVariants('https://a.test/r/x.ts', EXT)).toEqual([
      'https://a.test/r/x.ts',
      'https://a.test/r/x',
      'https://a.test/r/x.gts',
      'https://a.test/r/x.gjs',
      'https://a.test/r/x.js',
    ]);
  });

  it('normalises dependencies relative to their module', () => {
    expect(normaliseDependency('../b.gts?x', 'https://a.test/r/sub/a.ts', EXT)).toBe('https://a.test/r/b');
    expect(normaliseDependency('', 'https://a.test/r/a.ts', EXT)).toBeUndefined();
    expect(normaliseDependency(7, 'https://a.test/r/a.ts', EXT)).toBeUndefined();
  });

  it('resolves the longest realm', () => {
    const realms = new RealmRegistry(['https://a.test/', 'https://a.test/deep/']);
    expect(realms.find('https://a.test/deep/x.ts')).toBe('https://a.test/deep/');
    expect(realms.find('https://a.test/x.ts')).toBe('https://a.test/');
    expect(() => realms.realmOf('https://b.test/x.ts')).toThrow(/not inside any registered realm/);
  });
});

describe('generations', () => {
  it('detects module, realm and global bumps and forgets unwatched modules', () => {
    const g = new Generations();
    const s = g.snapshot('r/', 'r/a');
    expect(g.isCurrent(s)).toBe(true);
    g.bumpModule('r/b');
    expect(g.isCurrent(s)).toBe(true);
    g.bumpModule('r/a');
    expect(g.isCurrent(s)).toBe(false);
    g.release(s);
    expect(g.trackedModules).toBe(0);
    const t = g.snapshot('r/', 'r/a');
    g.bumpRealm('r/');
    expect(g.isCurrent(t)).toBe(false);
    const u = g.snapshot('r/', 'r/a');
    g.bumpGlobal();
    expect(g.isCurrent(u)).toBe(false);
  });
});

describe('memory tier', () => {
  const entry = (url: string): ModuleCacheEntry => ({
    url,
    realmURL: 'r/',
    scope: 'public',
    definitions: {},
    deps: [],
    createdAt: new Date(),
  });
  const record = (alias: string, e: ModuleCacheEntry) => ({ entry: e, alias, realm: 'r/', watermark: '0' });

  it('evicts by alias across scopes and keeps its alias index bounded by the LRU', () => {
    const m = new MemoryTier(2);
    m.set('r/a.ts', 'public', record('r/a', entry('r/a.ts')));
    m.set('r/a', 'u1', record('r/a', entry('r/a.ts')));
    expect(m.size).toBe(2);
    m.evictAlias('r/a');
    expect(m.size).toBe(0);
    for (let i = 0; i < 100; i++) m.set(`r/${i}`, 'public', record(`r/${i}`, entry(`r/${i}`)));
    expect(m.size).toBe(2);
    expect((m as unknown as { byAlias: Map<string, unknown> }).byAlias.size).toBe(2);
  });

  it('expires error entries after the TTL', () => {
    const m = new MemoryTier(10);
    m.set('r/e', 'public', record('r/e', { ...entry('r/e'), error: { message: 'x' }, createdAt: new Date(Date.now() - 1000) }));
    expect(m.get('r/e', 'public', 500)).toBeUndefined();
  });
});

describe('RealmRegistry: explicitly used realms', () => {
  it('are known (findKnown) but do not make lookups succeed (realmOf); registering one ends its use', () => {
    const registry = new RealmRegistry(['https://h.test/a/']);
    expect(registry.use('https://h.test/b/')).toBeUndefined();
    expect(registry.findKnown('https://h.test/b/x.ts')).toBe('https://h.test/b/');
    expect(registry.find('https://h.test/b/x.ts')).toBeUndefined();
    expect(() => registry.realmOf('https://h.test/b/x.ts')).toThrow(UnknownRealmError);
    // The longest known realm wins, registered or used.
    registry.use('https://h.test/a/deep/');
    expect(registry.findKnown('https://h.test/a/deep/x.ts')).toBe('https://h.test/a/deep/');
    registry.register('https://h.test/b/');
    registry.unregister('https://h.test/b/');
    expect(registry.findKnown('https://h.test/b/x.ts')).toBeUndefined();
    // A registered realm needs no note.
    registry.use('https://h.test/a/');
    expect(registry.known).toEqual(['https://h.test/a/deep/', 'https://h.test/a/']);
  });

  it(`keep at most ${MAX_EXPLICIT_REALMS}: the least recently used one is handed back to be forgotten`, () => {
    const registry = new RealmRegistry([]);
    const realm = (i: number) => `https://h.test/r${i}/`;
    for (let i = 0; i < MAX_EXPLICIT_REALMS; i++) expect(registry.use(realm(i))).toBeUndefined();
    // Using r0 again makes r1 the least recently used.
    expect(registry.use(realm(0))).toBeUndefined();
    expect(registry.use(realm(MAX_EXPLICIT_REALMS))).toBe(realm(1));
    expect(registry.findKnown(`${realm(1)}x.ts`)).toBeUndefined();
    expect(registry.findKnown(`${realm(0)}x.ts`)).toBe(realm(0));
    expect(registry.known).toHaveLength(MAX_EXPLICIT_REALMS);
  });
});
