/** What the primary and its workers say to each other over the cluster's IPC channel. */
export const READY = 'module-cache-service:ready';
/** A worker cannot serve and a restart would not help (the port is taken): the primary stops, saying why. */
export const FATAL = 'module-cache-service:fatal';
export const METRICS_REQUEST = 'module-cache-service:metrics-request';
export const METRICS_RESPONSE = 'module-cache-service:metrics-response';

export type WorkerMessage =
  { type: typeof READY; slot: number } | { type: typeof FATAL; message: string } | { type: typeof METRICS_REQUEST; id: number };

export type PrimaryMessage = { type: typeof METRICS_RESPONSE; id: number; contentType: string; text?: string; error?: string };

export function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}
