/** `@module-cache/nestjs/cluster`: the node:cluster primary's relay (workers opt in with `listener: { relay: true }`). */
export { ModuleCacheClusterRelay, type ModuleCacheClusterRelayOptions } from './relay';
