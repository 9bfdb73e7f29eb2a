import { tracingChannel, type TracingChannel } from 'node:diagnostics_channel';

/**
 * Node `diagnostics_channel` tracing channels (`TracingChannel`: start, end, asyncStart,
 * asyncEnd, error), so that OpenTelemetry or any APM can show where a slow lookup waited. Each
 * publishes a context object (below); `result` or `error` is set on it when the work settles.
 * Nothing is built or published while a channel has no subscribers.
 */
export const TRACING_CHANNELS = {
  /** A lookup past the memory hot path: `{ url, scope }`; result: whether an entry came back. */
  lookup: 'module-cache:lookup',
  /** One source computation: `{ url, realm, scope, attempt }`; result: the loaded module or null. */
  computation: 'module-cache:computation',
  /** One fenced persist: `{ url, realm, scope }`; result: `{ status }` — persisted, fenced, expired or busy (the fence's outcome). */
  persist: 'module-cache:persist',
  /** One invalidation call: `{ kind: 'module' | 'realm' | 'global', urls?, realm? }`; result: the URLs or the rows deleted. */
  invalidation: 'module-cache:invalidation',
  /** Claiming a key across processes, or waiting on a peer's claim: `{ url, key }`; result: `{ kind }` (claimed, row, alone). */
  claimWait: 'module-cache:claim-wait',
} as const;

export type TracingChannelName = keyof typeof TRACING_CHANNELS;

const channels = Object.fromEntries(Object.entries(TRACING_CHANNELS).map(([key, name]) => [key, tracingChannel(name)])) as Record<
  TracingChannelName,
  TracingChannel<object>
>;

/** `work()` traced on the named channel; just `work()` when nobody subscribes (no context is built). */
export function traced<T>(name: TracingChannelName, context: () => object, work: () => Promise<T>): Promise<T> {
  const channel = channels[name];
  if (!channel.hasSubscribers) return work();
  return channel.tracePromise(work, context());
}
