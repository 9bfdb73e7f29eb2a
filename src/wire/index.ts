/**
 * Every shape this library puts on a NOTIFY channel or on the cluster relay's IPC, by channel.
 * Each shape's file owns its encoder and its decoder (and, where the database builds the payload,
 * the SQL expression that does). All payloads are untrusted hints: any role can NOTIFY any
 * channel, so every decoder is strict and never throws.
 *
 * | channel (option, default)                             | shape           | sent by                                   | file            |
 * | ----------------------------------------------------- | --------------- | ----------------------------------------- | --------------- |
 * | invalidation (`channel`, module_cache_invalidated)    | invalidation    | an invalidating process (or the database) | invalidation.ts |
 * | the same, or in `wireFormat: 'boxel'` its control      | probe           | the listener's heartbeat, via the pool    | probe.ts        |
 * | channel (`<channel>__control`)                        | sync marker     | a strong invalidation, after it commits   | sync-marker.ts  |
 * | computed (`computedChannel`, module_cache_computed)   | wake-up         | whoever releases a claim                  | wake-up.ts      |
 * | ack (`ackChannel`, module_cache_acked)                | acknowledgement | the database, recording a peer's ack      | sync-marker.ts  |
 * | node:cluster IPC (no channel)                         | relay messages  | the primary's relay and its workers       | relay-ipc.ts    |
 *
 * On the invalidation channel the listener tells the shapes apart by their first key: probes
 * (`{"k":"probe",`) and sync markers (`{"k":"sync",`) first, everything else must parse as an
 * invalidation or is rejected and counted. In `wireFormat: 'boxel'` the invalidations take the
 * reference server's shape, and probes and sync markers go on the control channel instead, so the
 * reference's servers (which LISTEN on the invalidation channel) see only payloads they parse; on
 * the control channel anything but a probe or a sync marker is rejected. Postgres delivers every
 * channel's notifications to a session from one queue in commit order, so a sync marker still
 * arrives after the invalidation it confirms. `signing.ts` holds the one HMAC that invalidations and sync markers
 * carry; `fields.ts` the rules every shape shares (byte counting, Postgres's limit, origin ids).
 */
export { MAX_PAYLOAD_BYTES, encodeInvalidations, parseInvalidation } from './invalidation';
export type { EncodeOptions, InvalidationMessage, InvalidationTarget, ParseResult, WireFormat } from './invalidation';
export { encodeProbe, isProbePayload } from './probe';
export { ackPayloadSql, isSyncPayload, parseSync, syncMarkerAround, syncMarkerSql, type SyncMarker } from './sync-marker';
export { encodeWakeUp, parseWakeUp } from './wake-up';
export { isRelayMessage, type RelayToWorker, type RelayedState, type WorkerToRelay } from './relay-ipc';
export { POSTGRES_PAYLOAD_LIMIT, isOrigin } from './fields';
