/** How much sooner than its lease a process stops trusting its memory: clocks may run at slightly different rates. */
export function leaseMargin(leaseMs: number): number {
  return Math.max(500, Math.ceil(leaseMs * 0.05));
}
