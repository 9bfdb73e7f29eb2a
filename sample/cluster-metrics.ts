import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, register } from 'prom-client';
import { isMessage, METRICS_REQUEST, METRICS_RESPONSE, type PrimaryMessage, type WorkerMessage } from './cluster-messages';

const TIMEOUT_MS = 6_000;

/**
 * Primary side. Each scrape lands on whichever worker accepts the connection, and per-worker
 * counters would jump between scrapes; so a worker asks the primary, which collects every
 * worker's registry (prom-client's AggregatorRegistry, over IPC) and sums them.
 */
export function serveClusterMetrics(): (worker: Worker, message: unknown) => void {
  const aggregator = new AggregatorRegistry();
  return (worker, message) => {
    if (!isMessage<Extract<WorkerMessage, { type: typeof METRICS_REQUEST }>>(message, METRICS_REQUEST)) return;
    const reply = (rest: { text?: string; error?: string }) => {
      const response: PrimaryMessage = { type: METRICS_RESPONSE, id: message.id, contentType: aggregator.contentType, ...rest };
      if (worker.isConnected()) worker.send(response);
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (error: unknown) => reply({ error: error instanceof Error ? error.message : String(error) }),
    );
  };
}

/**
 * Worker side, part 1: answer the primary's collection requests. prom-client installs that
 * responder only when an AggregatorRegistry is constructed, so one is, for that alone.
 */
export function answerMetricsCollection(): void {
  if (cluster.isWorker) new AggregatorRegistry();
}

let nextId = 1;
const pending = new Map<number, (message: Extract<PrimaryMessage, { type: typeof METRICS_RESPONSE }>) => void>();
let listening = false;

/** Worker side, part 2: the whole cluster's metrics from the primary; this process's alone when not in a cluster. */
export async function clusterMetrics(): Promise<{ contentType: string; text: string }> {
  if (!cluster.isWorker || !process.send) return { contentType: register.contentType, text: await register.metrics() };
  if (!listening) {
    listening = true;
    process.on('message', (message: unknown) => {
      if (isMessage<Extract<PrimaryMessage, { type: typeof METRICS_RESPONSE }>>(message, METRICS_RESPONSE))
        pending.get(message.id)?.(message);
    });
  }
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`the primary did not answer a metrics request within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    pending.set(id, (message) => {
      clearTimeout(timer);
      pending.delete(id);
      if (message.text !== undefined) resolve({ contentType: message.contentType, text: message.text });
      else reject(new Error(`aggregating the workers' metrics failed: ${message.error}`));
    });
    process.send!({ type: METRICS_REQUEST, id } satisfies WorkerMessage);
  });
}
