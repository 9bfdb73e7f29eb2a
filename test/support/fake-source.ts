import type { DefinitionSource, DefinitionSourceContext, LoadedModule } from '../../src';

type Answer = LoadedModule | null | ((url: string, ctx: DefinitionSourceContext) => Promise<LoadedModule | null> | LoadedModule | null);

/** A controllable DefinitionSource: answers by URL, counts calls, can hold calls behind a gate. */
export class FakeSource implements DefinitionSource {
  readonly modules = new Map<string, Answer>();
  readonly calls: string[] = [];
  private gate: { promise: Promise<void>; open: () => void; waiting: number } | undefined;
  version = 1;

  set(url: string, answer: Answer): this {
    this.modules.set(url, answer);
    return this;
  }

  /** A module whose definitions carry the current `version`, so stale results are visible. */
  define(url: string, deps: string[] = [], extra: Partial<LoadedModule> = {}): this {
    return this.set(url, () => ({ definitions: { value: { version: this.version, url } }, deps, ...extra }));
  }

  callsFor(url: string): number {
    return this.calls.filter((c) => c === url).length;
  }

  /** Subsequent load() calls wait until release(). */
  hold(): void {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open, waiting: 0 };
  }

  get waiting(): number {
    return this.gate?.waiting ?? 0;
  }

  release(): void {
    const gate = this.gate;
    this.gate = undefined;
    gate?.open();
  }

  async load(url: string, ctx: DefinitionSourceContext): Promise<LoadedModule | null> {
    this.calls.push(url);
    // The answer is taken when the call starts (reading the module's current version), and
    // delivered when the gate opens: a held computation returns what it saw before the hold.
    const answer = this.modules.get(url);
    const result = answer === undefined || answer === null ? null : typeof answer === 'function' ? answer(url, ctx) : answer;
    if (this.gate) {
      const gate = this.gate;
      gate.waiting++;
      await gate.promise;
    }
    return result;
  }
}
