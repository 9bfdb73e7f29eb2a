// temporary: callers move to ../listener/invalidation-listener (the integrator removes this shim).
export * from '../listener/invalidation-listener';
