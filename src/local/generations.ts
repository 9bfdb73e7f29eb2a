/**
 * Generation counters: a computation snapshots them before its first await and may only
 * publish its result if none moved since. Module counters exist only while some snapshot
 * watches them, so invalidating a million distinct modules with nothing in flight
 * allocates nothing that outlives the call.
 */
export interface GenerationSnapshot {
  readonly realm: string;
  readonly alias: string;
  readonly global: number;
  readonly realmGeneration: number;
  readonly moduleGeneration: number;
}

interface ModuleCounter {
  generation: number;
  watchers: number;
}

export class Generations {
  private global = 0;
  private readonly realms = new Map<string, number>();
  private readonly modules = new Map<string, ModuleCounter>();

  /** Takes a snapshot; pair every call with release(). */
  snapshot(realm: string, alias: string): GenerationSnapshot {
    let counter = this.modules.get(alias);
    if (!counter) {
      counter = { generation: 0, watchers: 0 };
      this.modules.set(alias, counter);
    }
    counter.watchers++;
    return {
      realm,
      alias,
      global: this.global,
      realmGeneration: this.realms.get(realm) ?? 0,
      moduleGeneration: counter.generation,
    };
  }

  release(snapshot: GenerationSnapshot): void {
    const counter = this.modules.get(snapshot.alias);
    if (counter && --counter.watchers <= 0) this.modules.delete(snapshot.alias);
  }

  isCurrent(snapshot: GenerationSnapshot): boolean {
    return (
      snapshot.global === this.global &&
      snapshot.realmGeneration === (this.realms.get(snapshot.realm) ?? 0) &&
      snapshot.moduleGeneration === (this.modules.get(snapshot.alias)?.generation ?? 0)
    );
  }

  bumpModule(alias: string): void {
    const counter = this.modules.get(alias);
    if (counter) counter.generation++;
  }

  /** Realm counters are bounded by the registered realms: callers pass registered ones only. */
  bumpRealm(realm: string): void {
    this.realms.set(realm, (this.realms.get(realm) ?? 0) + 1);
  }

  bumpGlobal(): void {
    this.global++;
  }

  /** The aliases some snapshot watches (each once). */
  watchedAliases(): IterableIterator<string> {
    return this.modules.keys();
  }

  /** Number of module counters alive (for tests and metrics). */
  get trackedModules(): number {
    return this.modules.size;
  }
}
