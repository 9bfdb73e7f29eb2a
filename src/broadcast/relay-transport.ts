// temporary: callers move to ../connection/relayed-connection (the integrator removes this shim).
export { RelayedConnection as RelayTransport } from '../connection/relayed-connection';
