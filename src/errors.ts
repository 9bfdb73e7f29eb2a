import { messages } from './messages';

/**
 * Base class of every error this library throws on purpose. `code` is stable across versions
 * (match on it, not on the message); messages are built in one place (`messages.ts`).
 */
export abstract class ModuleCacheError extends Error {
  abstract readonly code: `E_${string}`;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A module URL that is not an absolute, usable http(s) URL. */
export class InvalidModuleURLError extends ModuleCacheError {
  readonly code = 'E_INVALID_MODULE_URL';
}

/** A realm URL that is not an absolute http(s) URL ending with "/". */
export class InvalidRealmURLError extends ModuleCacheError {
  readonly code = 'E_INVALID_REALM_URL';
}

/** A module URL inside no registered realm (lookups only: invalidations of such URLs resolve to []). */
export class UnknownRealmError extends ModuleCacheError {
  readonly code = 'E_UNKNOWN_REALM';

  constructor(
    readonly url: string,
    registered: readonly string[],
  ) {
    super(messages.unknownRealm(url, registered));
  }
}

/** `LookupOptions.realmURL` was given, but the module URL does not lie inside it. */
export class ModuleOutsideRealmError extends ModuleCacheError {
  readonly code = 'E_OUTSIDE_REALM';

  constructor(
    readonly url: string,
    readonly realmURL: string,
  ) {
    super(messages.outsideRealm(url, realmURL));
  }
}

/** `prewarm(realmURL)` without a list of modules, and the source has no `listModules()` to list them. */
export class NoModuleListingError extends ModuleCacheError {
  readonly code = 'E_NO_MODULE_LISTING';
}

/** A scope (or what `scopeFor` returned) that cannot key a cache row. */
export class InvalidScopeError extends ModuleCacheError {
  readonly code = 'E_INVALID_SCOPE';
}

/** Lookup options that are not what they must be (e.g. a `priority` outside 0..10); the message names the option. */
export class InvalidLookupOptionsError extends ModuleCacheError {
  readonly code = 'E_INVALID_LOOKUP_OPTIONS';
}

/** `lookupDefinition`: the module or the definition is missing, or errored. */
export class DefinitionNotFoundError extends ModuleCacheError {
  readonly code = 'E_DEFINITION_NOT_FOUND';

  constructor(
    readonly moduleURL: string,
    readonly definitionName: string,
    readonly reason: string,
  ) {
    super(messages.definitionNotFound(moduleURL, definitionName, reason));
  }
}

/**
 * No module at the URL nor at any of its extension candidates. The lookups return `undefined` for
 * that; an HTTP handler throws this so the exception filter answers 404 with the usual body.
 */
export class ModuleNotFoundError extends ModuleCacheError {
  readonly code = 'E_MODULE_NOT_FOUND';

  constructor(readonly moduleURL: string) {
    super(messages.moduleNotFound(moduleURL));
  }
}

/** The DefinitionSource threw, or returned something that is not a LoadedModule. Never cached. */
export class DefinitionSourceError extends ModuleCacheError {
  readonly code: `E_${string}` = 'E_SOURCE_FAILED';
}

/** The DefinitionSource did not answer within `sourceTimeoutMs` (its signal was aborted). Never cached. */
export class DefinitionSourceTimeoutError extends DefinitionSourceError {
  override readonly code = 'E_SOURCE_TIMEOUT';
}

/** The application is shutting down: work in progress was abandoned. Never cached. */
export class ModuleCacheShutdownError extends ModuleCacheError {
  readonly code = 'E_SHUTTING_DOWN';
}

/** The delete+notify transaction of an invalidation failed; local state was still invalidated. */
export class InvalidationBroadcastError extends ModuleCacheError {
  readonly code = 'E_INVALIDATION_BROADCAST';
}

/** Strong consistency: the invalidation committed (and reaches peers), but their acknowledgements could not be awaited. */
export class InvalidationUnconfirmedError extends ModuleCacheError {
  readonly code = 'E_INVALIDATION_UNCONFIRMED';
}

/** Bad options: the message names the option. */
export class ModuleCacheOptionsError extends ModuleCacheError {
  readonly code = 'E_INVALID_OPTIONS';
}

/** The tables or functions of the migrations are missing or out of date. */
export class ModuleCacheSchemaError extends ModuleCacheError {
  readonly code = 'E_SCHEMA';
}

/** A peer process was computing the module and neither finished nor let go within coalesceWaitTimeoutMs. */
export class CoalesceTimeoutError extends ModuleCacheError {
  readonly code = 'E_COALESCE_TIMEOUT';
}

/**
 * The database could not be reached or dropped the connection mid-statement (a restart, a killed
 * backend, a full connection limit). Operational: it reaches the caller, never stored. `cause`
 * holds the driver's error.
 */
export class DatabaseUnavailableError extends ModuleCacheError {
  readonly code = 'E_DATABASE_UNAVAILABLE';
}

/**
 * A bounded wait ran out (`deadline()` in timeout.ts): a statement on the dedicated connection, a
 * heartbeat probe, a relay request, a health query. Matched by class, never by its text.
 */
export class DeadlineError extends ModuleCacheError {
  readonly code = 'E_DEADLINE';

  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(messages.deadline(what, ms));
  }
}

/** Strong consistency: the heartbeat could not renew this process's lease, so its probe failed (`cause`: why). */
export class LeaseRenewalError extends ModuleCacheError {
  readonly code = 'E_LEASE_RENEWAL';
}

/**
 * An invalidation could not enter the fence within `fenceWaitMs`: another invalidation touching
 * the same partitions (or a clear) held it that long. Nothing was deleted or broadcast; this
 * process's own memory was cleared before the attempt and stays cleared. Retry later.
 */
export class FenceBusyError extends ModuleCacheError {
  readonly code = 'E_FENCE_BUSY';
}
