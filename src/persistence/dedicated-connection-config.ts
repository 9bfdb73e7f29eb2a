// temporary: callers move to ../connection/connection-config (the integrator removes this shim).
export * from '../connection/connection-config';
