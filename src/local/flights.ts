/** One shared computation of (realm, url, scope). */
export interface Flight<T> {
  readonly key: string;
  readonly realm: string;
  readonly url: string;
  readonly alias: string;
  readonly scope: string;
  /** Whether it coalesces across processes (and so may wait on a peer's claim); dependency lookups never join such a flight. */
  readonly coalesce: boolean;
  promise: Promise<T>;
  /** Flights this one is awaiting (dependency lookups): a wait-for graph to refuse deadlocks. */
  readonly waitingOn: Set<Flight<T>>;
}

export function flightKey(realm: string, url: string, scope: string, { coalesce }: { coalesce: boolean }): string {
  return `${realm}\u0000${url}\u0000${scope}${coalesce ? '' : '\u0000local'}`;
}

/** Per-key single-flight; removal is identity-checked so a finished flight never evicts its successor. */
export class Flights<T, F extends Flight<T> = Flight<T>> {
  private readonly flights = new Map<string, F>();

  get size(): number {
    return this.flights.size;
  }

  all(): F[] {
    return [...this.flights.values()];
  }

  get(key: string): F | undefined {
    return this.flights.get(key);
  }

  add(flight: F): void {
    this.flights.set(flight.key, flight);
  }

  /** Removes `flight` only if it is still the registered one. */
  remove(flight: F): void {
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
  }

  /** Forgets matching flights so later callers start afresh; their own callers still get a (retried) result. */
  drop(predicate: (flight: F) => boolean): void {
    for (const [key, flight] of this.flights) {
      if (predicate(flight)) this.flights.delete(key);
    }
  }

  /** True if `from` (transitively) waits on `to`: joining would deadlock. */
  static reaches<T>(from: Flight<T>, to: Flight<T>): boolean {
    const seen = new Set<Flight<T>>();
    const stack = [from];
    while (stack.length) {
      const f = stack.pop()!;
      if (f === to) return true;
      if (seen.has(f)) continue;
      seen.add(f);
      stack.push(...f.waitingOn);
    }
    return false;
  }
}
