/** What the callers of one computation asked for, as the source sees it. */
export interface CallerHints {
  priority: number;
  user?: string;
  /** False for prewarm(): an error entry is reported, not stored. A lookup's own computation stores it. */
  persistErrors?: boolean;
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
  /** Whether an error entry is stored: false only while every caller is a prewarm(). */
  persistErrors: boolean;

  constructor(first: CallerHints) {
    this.current = first.priority;
    this.user = first.user;
    this.persistErrors = first.persistErrors !== false;
  }

  get priority(): number {
    return this.current;
  }

  /**
   * A caller joined: keeps the higher of the two priorities (telling the listeners when it rose), and
   * an ordinary lookup that joins a prewarm's computation has its error entry stored, as its own would be.
   */
  join({ priority, persistErrors }: CallerHints): void {
    if (persistErrors !== false) this.persistErrors = true;
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
