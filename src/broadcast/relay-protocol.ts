// temporary: callers move to ../wire/relay-ipc (the integrator removes this shim).
export * from '../wire/relay-ipc';
