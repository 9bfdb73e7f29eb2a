import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { ModuleCacheInvalidationListener } from '../listener/invalidation-listener';
import { ModuleCacheOptionsError } from '../errors';
import { CachingDefinitionLookup } from '../lookup/module-cache.service';
import { MODULE_CACHE_INVALIDATIONS, MODULE_CACHE_RECORDER } from '../module-cache.constants';
import type { Recorder } from '../events/recorder';
import type { InvalidationStore } from '../persistence/invalidations';
import { messages } from '../messages';
import { withTimeout } from '../timeout';
import { describeError } from '../describe-error';

export interface ModuleCacheHealthOptions {
  /** Down when `pg_notification_queue_usage()` is above this fraction (0..1). Default 0.5. */
  maxNotifyQueueUsage?: number;
  /** Down when reading the queue usage takes longer than this. Default 3000 ms. */
  timeoutMs?: number;
}

export interface ModuleCacheHealthReport {
  healthy: boolean;
  /** One sentence per reason it is unhealthy (empty when healthy). */
  problems: string[];
  /**
   * Up but not at full strength: a persist or an invalidation gave up entering the fence within
   * `fenceWaitMs` in the last 10 s (results served unpersisted, invalidations failing with
   * E_FENCE_BUSY). Still `healthy`: taking the process out of rotation would not help.
   */
  degraded: boolean;
  /** One sentence per reason it is degraded (empty when not). */
  warnings: string[];
  details: Record<string, unknown>;
}

const DEFAULTS = { maxNotifyQueueUsage: 0.5, timeoutMs: 3_000 };

/**
 * The cache's health, without any health-check framework: down while the invalidation listener
 * is not LISTENing (peer invalidations would be missed), when its self-probe failed (NOTIFY
 * delivery does not work, e.g. behind a transaction-pooling proxy), or when the cluster's NOTIFY
 * queue fills up (a full queue makes every invalidation fail). `@module-cache/nestjs/health` wraps it
 * for @nestjs/terminus.
 */
@Injectable()
export class ModuleCacheHealth {
  private readonly logger = new Logger('ModuleCacheHealth');
  private wasHealthy: boolean | undefined;

  constructor(
    private readonly lookup: CachingDefinitionLookup,
    @Inject(MODULE_CACHE_INVALIDATIONS) private readonly invalidations: InvalidationStore,
    @Inject(MODULE_CACHE_RECORDER) private readonly recorder: Recorder,
    @Optional() @Inject(ModuleCacheInvalidationListener) private readonly listener: ModuleCacheInvalidationListener | null = null,
  ) {}

  async check(options: ModuleCacheHealthOptions = {}): Promise<ModuleCacheHealthReport> {
    const { maxNotifyQueueUsage, timeoutMs } = { ...DEFAULTS, ...options };
    if (!(maxNotifyQueueUsage >= 0 && maxNotifyQueueUsage <= 1)) {
      throw new ModuleCacheOptionsError(
        messages.invalidOption('health maxNotifyQueueUsage', `must be between 0 and 1, got ${maxNotifyQueueUsage}`),
      );
    }
    if (!(timeoutMs > 0))
      throw new ModuleCacheOptionsError(messages.invalidOption('health timeoutMs', `must be positive, got ${timeoutMs}`));
    const problems: string[] = [];

    const listener = this.listener ? this.listener.state : 'disabled';
    if (this.listener && listener !== 'listening') problems.push(`invalidation listener is ${listener}, not listening`);
    const probe = this.listener?.probe;
    const selfProbe = !probe ? 'disabled' : probe.ok === undefined ? 'pending' : probe.ok ? 'ok' : 'failed';
    if (probe?.ok === false) problems.push(`self-probe failed: ${probe.reason ?? 'unknown reason'}`);

    let notifyQueueUsage: number | null = null;
    try {
      notifyQueueUsage = await withTimeout(this.invalidations.notifyQueueUsage(), timeoutMs, 'pg_notification_queue_usage()');
      if (notifyQueueUsage > maxNotifyQueueUsage) {
        problems.push(`NOTIFY queue is ${(notifyQueueUsage * 100).toFixed(1)}% full (limit ${maxNotifyQueueUsage * 100}%)`);
      }
    } catch (error) {
      problems.push(`pg_notification_queue_usage() failed: ${describeError(error)}`);
    }

    const stats = this.lookup.stats();
    const warnings: string[] = [];
    const fence = this.recorder.fenceBusyLately ? 'busy' : 'ok';
    if (fence === 'busy') {
      warnings.push(
        `the fence was busy in the last 10 s: ${stats.fenceBusy.persists} persists served unpersisted and ` +
          `${stats.fenceBusy.invalidations} invalidations refused (E_FENCE_BUSY) so far`,
      );
    }
    const details = {
      fence,
      fenceBusy: stats.fenceBusy,
      ...(stats.membership ? { membership: stats.membership } : {}),
      listener,
      selfProbe,
      ...(probe?.ok === false && probe.reason ? { selfProbeError: probe.reason } : {}),
      notifyQueueUsage,
      maxNotifyQueueUsage,
      hits: stats.hits,
      computes: stats.computes,
      discards: stats.discards,
      reconnects: stats.reconnects,
    };
    this.logTransition(problems);
    return { healthy: problems.length === 0, problems, degraded: warnings.length > 0, warnings, details };
  }

  /** One line when health changes, not one per check. */
  private logTransition(problems: string[]): void {
    const healthy = problems.length === 0;
    if (healthy === this.wasHealthy) return;
    if (!healthy) this.logger.warn(`module cache unhealthy: ${problems.join('; ')}`);
    else if (this.wasHealthy === false) this.logger.log('module cache healthy again');
    this.wasHealthy = healthy;
  }
}
