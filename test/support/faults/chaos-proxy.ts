import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface ChaosOptions {
  /** Mean time between two cuts (exponentially distributed: cuts come at random moments). */
  meanIntervalMs: number;
  /** Stop cutting after this many (default: no bound but stop()). */
  maxCuts?: number;
  /**
   * Share of cuts that pick among the connections that carried bytes within the last
   * `recentMs` (a statement in flight, most likely) rather than among all of them (default 0.5).
   */
  busyShare?: number;
  recentMs?: number;
}

export interface ChaosProxy {
  /** `url` with its host and port replaced by the proxy's. */
  readonly url: string;
  /** Starts destroying random live connections at random moments, until stopChaos() (or maxCuts). */
  startChaos(options: ChaosOptions): void;
  stopChaos(): void;
  /** Connections cut so far (both sides destroyed: the client sees its connection drop, the server its session end). */
  readonly cuts: number;
  /** Cuts by the `application_name` the client sent in its startup message ('' when none, '?' before it came). */
  cutsByApplication(): Record<string, number>;
  /** Connections forwarded so far, and those open now. */
  readonly connections: number;
  readonly live: number;
  /** Closes every connection and the listening socket. */
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream: Socket;
  lastData: number;
  applicationName?: string;
}

const SSL_REQUEST = 80877103;

/** `application_name` from a StartupMessage (length, protocol 3.0, then name/value pairs); '' when absent. */
function startupApplicationName(packet: Buffer): string | undefined {
  if (packet.length < 8 || packet.readInt32BE(4) === SSL_REQUEST) return undefined;
  const fields = packet.subarray(8, packet.readInt32BE(0)).toString('utf8').split('\0');
  const at = fields.indexOf('application_name');
  return at >= 0 && at % 2 === 0 ? fields[at + 1] : '';
}

/**
 * A TCP proxy in front of the Postgres of `url` (like tcp-proxy.ts) that, once started, cuts
 * random live connections at random moments: a lost network path, a killed backend, a restarted
 * bouncer, as a client sees them. A cut is a reset (RST) or a plain close (FIN), at random.
 */
export async function startChaosProxy(url: string): Promise<ChaosProxy> {
  const target = new URL(url);
  const targetPort = Number(target.port || 5432);
  const targetHost = target.hostname;
  const links = new Set<Link>();
  let connections = 0;
  let cuts = 0;
  const cutsBy = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let chaos: Required<ChaosOptions> | undefined;

  const server = createServer((client) => {
    connections++;
    const upstream = connect(targetPort, targetHost);
    const link: Link = { client, upstream, lastData: performance.now() };
    links.add(link);
    const drop = () => {
      links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', drop);
      socket.on('close', drop);
      socket.on('data', () => (link.lastData = performance.now()));
    }
    client.on('data', (chunk: Buffer) => (link.applicationName ??= startupApplicationName(chunk)));
    client.pipe(upstream).pipe(client);
  });

  const cut = (link: Link) => {
    links.delete(link);
    cuts++;
    const name = link.applicationName ?? '?';
    cutsBy.set(name, (cutsBy.get(name) ?? 0) + 1);
    if (Math.random() < 0.5) {
      link.client.resetAndDestroy();
      link.upstream.resetAndDestroy();
    } else {
      link.client.destroy();
      link.upstream.destroy();
    }
  };

  const schedule = () => {
    if (!chaos) return;
    const delay = -Math.log(1 - Math.random()) * chaos.meanIntervalMs;
    timer = setTimeout(() => {
      if (!chaos) return;
      const all = [...links];
      const recent = performance.now() - chaos.recentMs;
      const busy = all.filter((l) => l.lastData >= recent);
      const pool = busy.length > 0 && Math.random() < chaos.busyShare ? busy : all;
      if (pool.length > 0) cut(pool[Math.floor(Math.random() * pool.length)]);
      if (cuts >= chaos.maxCuts) chaos = undefined;
      else schedule();
    }, delay);
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as AddressInfo).port);

  const stopChaos = () => {
    chaos = undefined;
    clearTimeout(timer);
  };
  return {
    url: proxied.toString(),
    startChaos(options) {
      stopChaos();
      chaos = { maxCuts: Number.POSITIVE_INFINITY, busyShare: 0.5, recentMs: 20, ...options };
      schedule();
    },
    stopChaos,
    get cuts() {
      return cuts;
    },
    cutsByApplication: () => Object.fromEntries(cutsBy),
    get connections() {
      return connections;
    },
    get live() {
      return links.size;
    },
    async close() {
      stopChaos();
      for (const link of links) {
        link.client.destroy();
        link.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
