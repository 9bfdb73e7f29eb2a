/**
 * What a cluster primary's relay and its workers say over node:cluster IPC (see
 * cluster/relay.ts and connection/relayed-connection.ts). Every message carries
 * `moduleCacheRelay: 1`, so an application's own IPC messages are left alone (and cannot be
 * taken for ours by accident).
 */

/**
 * The dedicated connection's states as the relay reports them: ListenerState
 * (connection/dedicated-connection.ts), spelled out so that the wire owns its whole shape and
 * imports nothing above it. The relay sends a ListenerState as this and the worker reads this
 * as a ListenerState, so the compiler keeps the two equal.
 */
export type RelayedState = 'connecting' | 'listening' | 'reconnecting' | 'closed';

export type RelayToWorker =
  | { moduleCacheRelay: 1; type: 'state'; state: RelayedState; reconnects: number }
  | { moduleCacheRelay: 1; type: 'resync' }
  /** One NOTIFY the relay's connection received, as it arrived. */
  | { moduleCacheRelay: 1; type: 'notification'; channel: string; payload: string }
  | { moduleCacheRelay: 1; type: 'locked'; id: number; result: boolean | 'unavailable' }
  | { moduleCacheRelay: 1; type: 'unlocked'; id: number; error?: string };

export type WorkerToRelay =
  | { moduleCacheRelay: 1; type: 'hello'; channels: string[] }
  | { moduleCacheRelay: 1; type: 'lock'; id: number; key: string }
  | { moduleCacheRelay: 1; type: 'unlock'; id: number; key: string; channel: string; payload: string }
  | { moduleCacheRelay: 1; type: 'reconnect'; reason: string }
  | { moduleCacheRelay: 1; type: 'bye' };

export function isRelayMessage<T extends { type: string }>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && (message as { moduleCacheRelay?: unknown }).moduleCacheRelay === 1;
}
