/** Base class of every error this library throws on purpose. */
export class ModuleCacheError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidModuleURLError extends ModuleCacheError {}

export class UnknownRealmError extends ModuleCacheError {}

export class DefinitionNotFoundError extends ModuleCacheError {
  constructor(
    readonly moduleURL: string,
    readonly definitionName: string,
    reason: string,
  ) {
    super(`definition "${definitionName}" of ${moduleURL}: ${reason}`);
  }
}

export class DefinitionSourceError extends ModuleCacheError {}

export class DefinitionSourceTimeoutError extends DefinitionSourceError {}

/** Every attempt was discarded because the module kept being invalidated while it computed. */
export class ComputationDiscardedError extends ModuleCacheError {}

/** The delete+notify transaction of an invalidation failed; local state was still bumped. */
export class InvalidationBroadcastError extends ModuleCacheError {}

export class ModuleCacheOptionsError extends ModuleCacheError {}

export class ModuleCacheSchemaError extends ModuleCacheError {}

/** A peer process was computing the module and neither finished nor let go within coalesceWaitTimeoutMs. */
export class CoalesceTimeoutError extends ModuleCacheError {}
