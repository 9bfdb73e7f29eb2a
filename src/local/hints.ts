/** What the callers of one computation asked for, as the source sees it. */
export interface CallerHints {
  priority: number;
  user?: string;
}

/**
 * The callers' hints of one in-process computation: the user of the caller that started it, and
 * the highest priority among every caller that joined it since. A raise is told to the source
 * through the listeners it registered with `onPriorityChange` (the source decides what to do).
 */
export class FlightHints {
  private current: number;
  private readonly listeners = new Set<(priority: number) => void>();
  readonly user: string | undefined;

  constructor(first: CallerHints) {
    this.current = first.priority;
    this.user = first.user;
  }

  get priority(): number {
    return this.current;
  }

  /** A caller joined: keeps the higher of the two priorities and tells the listeners when it rose. */
  join(priority: number): void {
    if (priority <= this.current) return;
    this.current = priority;
    for (const listener of [...this.listeners]) {
      try {
        listener(priority);
      } catch {
        // A source's listener that throws must not fail the caller that joined.
      }
    }
  }

  /** Registers a listener; the returned function removes it. */
  onPriorityChange(listener: (priority: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
