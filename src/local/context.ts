import type { ModuleCacheEntry } from '../types';

/** A lookup's module: canonical URL, realm, alias, candidates to compute, and the scope of the call. */
export interface LookupContext {
  url: string;
  realm: string;
  scope: string;
  alias: string;
  candidates: string[];
  /** The caller's spelling, for batch results. */
  input?: string;
}

/** A fenced entry: an entry, where it belongs, and the fence watermark it is valid as of. */
export interface FencedEntry {
  entry: ModuleCacheEntry;
  alias: string;
  realm: string;
  watermark: string;
  /** A result every persist of which was refused (churn): served to the callers waiting for it, never stored or built upon. */
  unpersisted?: true;
}
