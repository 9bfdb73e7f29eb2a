import type { ListenerState, RawNotification } from './listen-connection';

/**
 * What a cluster primary's relay and its workers say over node:cluster IPC. Every message carries
 * `moduleCacheRelay: 1`, so an application's own IPC messages are left alone (and cannot be
 * taken for ours by accident).
 */
export type RelayToWorker =
  | { moduleCacheRelay: 1; type: 'state'; state: ListenerState; reconnects: number }
  | { moduleCacheRelay: 1; type: 'resync' }
  | ({ moduleCacheRelay: 1; type: 'notification' } & RawNotification)
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
