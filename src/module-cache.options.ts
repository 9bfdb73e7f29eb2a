// temporary: callers move to ./config/options and ./config/defaults
export {
  CHANNEL_NAME,
  resolveModuleCacheOptions,
  type ListenerConnectionOptions,
  type ListenerOptions,
  type ModuleCacheOptions,
  type ResolvedModuleCacheOptions,
  type ScopeFor,
} from './config/options';
export { DEFAULTS } from './config/defaults';
