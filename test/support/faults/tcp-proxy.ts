import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

export interface TcpProxy {
  /** `url` with its host and port replaced by the proxy's. */
  readonly url: string;
  /** New connections are dropped as soon as they arrive (connections already through stay up). */
  refuse(): void;
  /** New connections are forwarded again. */
  accept(): void;
  /** Destroys every connection through the proxy now (no goodbye: what a server crash looks like to a client); new ones are forwarded. */
  cut(): number;
  /** Connections dropped while refusing. */
  readonly refused: number;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of the Postgres of `url`, for tests that must hold a client's reconnects off
 * for as long as they need (rather than racing its backoff): while `refuse()`d, every connection
 * attempt fails at once, and the client stays disconnected until `accept()`.
 */
export async function startTcpProxy(url: string): Promise<TcpProxy> {
  const target = new URL(url);
  const targetPort = Number(target.port || 5432);
  const targetHost = target.hostname;
  const sockets = new Set<Socket>();
  let refusing = false;
  let refused = 0;
  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (refusing) {
      refused++;
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as AddressInfo).port);
  return {
    url: proxied.toString(),
    refuse: () => void (refusing = true),
    accept: () => void (refusing = false),
    cut() {
      const n = sockets.size;
      sockets.forEach((s) => s.destroy());
      return n;
    },
    get refused() {
      return refused;
    },
    async close() {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
