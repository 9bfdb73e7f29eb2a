import type { DefinitionSource } from '@module-cache/nestjs';

export const REALM = 'https://example.test/realm/';

/** The realm's modules and their imports; a real source would read, compile or prerender them. */
const MODULES: Record<string, string[]> = { 'app.ts': ['./util.ts'], 'util.ts': [] };

/**
 * The expensive part, here a stand-in: each module "exports" its name and says when it was
 * computed, so a recomputation after an invalidation is visible. `null`: no module at that URL.
 */
export const source: DefinitionSource = {
  async load(moduleURL) {
    const name = moduleURL.slice(REALM.length);
    const deps = Object.hasOwn(MODULES, name) ? MODULES[name] : undefined;
    if (!deps) return null;
    return { definitions: { [name.replace(/\.ts$/, '')]: { kind: 'const', computedAt: new Date().toISOString() } }, deps };
  },
};
