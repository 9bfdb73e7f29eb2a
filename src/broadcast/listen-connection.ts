// temporary: callers move to ../connection/dedicated-connection and ../connection/pg-connection (the integrator removes this shim).
export type { ListenerState, RawNotification } from '../connection/dedicated-connection';
export type { DedicatedConnection as NotificationTransport } from '../connection/dedicated-connection';
export { PgDedicatedConnection as ListenConnection } from '../connection/pg-connection';
export type { PgDedicatedConnectionConfig as ListenConnectionConfig } from '../connection/pg-connection';
