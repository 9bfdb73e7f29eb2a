import { startEmbeddedDatabase, type KeeperMessage } from './embedded-database';

/**
 * Entry point of the process that owns the embedded PostgreSQL (forked, detached, by the primary;
 * see startDetachedEmbeddedDatabase). It stops the server and removes its data dir when asked
 * (`{ type: 'stop' }`), when the primary goes away (IPC disconnect), or on SIGTERM.
 */
let stopping: Promise<void> | undefined;

// A stop that arrives mid-start waits for the start: the server must not outlive its keeper.
const stop = () =>
  (stopping ??= starting.then(
    (database) => database.stop().finally(() => process.exit(0)),
    () => process.exit(1),
  ));

// Registered before the start: startEmbeddedDatabase keeps the signal handlers that exist already.
process.on('message', (message: { type?: string }) => message?.type === 'stop' && void stop());
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
// Its own session keeps a terminal's Ctrl-C away; a SIGINT sent on purpose waits for the primary.
process.on('SIGINT', () => {});

// No handler can run before this line: they are all event callbacks.
const starting = startEmbeddedDatabase((line) => process.stderr.write(`${line}\n`));
starting.then(
  ({ url, dataDir }) => {
    if (!stopping && process.connected) process.send!({ type: 'started', url, dataDir } satisfies KeeperMessage);
  },
  (error: unknown) => {
    const message: KeeperMessage = { type: 'failed', error: error instanceof Error ? error.message : String(error) };
    if (process.connected) process.send!(message, () => process.exit(1));
    else process.exit(1);
  },
);
