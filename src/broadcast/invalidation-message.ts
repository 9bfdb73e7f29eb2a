// temporary: callers move to ../wire/invalidation, ../wire/probe and ../wire/sync-marker (the integrator removes this shim).
export * from '../wire/invalidation';
export * from '../wire/probe';
export * from '../wire/sync-marker';
