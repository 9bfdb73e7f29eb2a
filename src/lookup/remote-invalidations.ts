import { Logger } from '@nestjs/common';
import { Subscription } from 'rxjs';
import type { ModuleCacheInvalidationListener, Resync } from '../listener/invalidation-listener';
import type { InvalidationMessage } from '../wire/invalidation';
import type { Membership } from '../consistency/membership';
import type { Recorder } from '../events/recorder';
import type { LocalState } from '../local/local-state';
import { describeError } from '../describe-error';

/**
 * Turns the listener's messages into local effects. Payloads are untrusted hints: only URLs
 * inside realms this process knows (registered, or used explicitly with `realmURL`) are applied, so a stranger on the channel can at worst cause
 * recomputations, never unbounded state.
 */
export class RemoteInvalidations {
  private readonly logger = new Logger('ModuleCacheRemoteInvalidations');
  private readonly subscription = new Subscription();

  constructor(
    listener: ModuleCacheInvalidationListener,
    private readonly local: LocalState,
    private readonly recorder: Recorder,
    private readonly origin: string,
    membership: Membership | null,
  ) {
    this.subscription.add(
      listener.notifications$.subscribe((message) => {
        // Our own echo: applied before the NOTIFY was sent. (The reference's format has no origin: applied again, harmlessly.)
        if (message.origin !== undefined && message.origin === this.origin) return;
        try {
          this.apply(message);
        } catch (error) {
          this.logger.warn(`ignored an invalidation message: ${describeError(error)}`);
        }
      }),
    );
    this.subscription.add(
      listener.resync$.subscribe((resync) => {
        try {
          this.resync(resync);
        } catch (error) {
          // Never leave memory as it was after a failed targeted replay.
          this.logger.error(`targeted resync failed, clearing everything: ${describeError(error)}`);
          this.local.forgetAll();
        }
      }),
    );
    this.subscription.add(listener.state$.subscribe((state) => this.recorder.record({ type: 'listener-state', state })));
    if (membership) {
      // Everything delivered before a peer's sync marker has been applied: say so.
      this.subscription.add(
        listener.syncs$.subscribe((sync) => {
          if (sync.origin !== this.origin) membership.acknowledge(sync.seq, sync.token);
        }),
      );
    }
  }

  close(): void {
    this.subscription.unsubscribe();
  }

  /** Notifications sent while we were not listening are lost: forget what they touched, or everything. */
  private resync(resync: Resync): void {
    if (resync.mode === 'targeted') {
      const evicted = this.local.forgetFenceLogRows(resync.rows);
      this.logger.log(
        `listener (re)connected: replayed ${resync.rows.length} fence-log row(s) after sequence ${resync.from} up to ${resync.to}, ${evicted} memory entr${evicted === 1 ? 'y' : 'ies'} evicted`,
      );
      const { from, to } = resync;
      this.recorder.record({ type: 'resync', mode: 'targeted', from, to, rows: resync.rows.length, evicted });
      return;
    }
    const evicted = this.local.memory.size;
    this.local.forgetAll();
    this.logger.log(
      `listener (re)connected: full resync (${resync.reason}): global generation bumped, ${evicted} memory entr${evicted === 1 ? 'y' : 'ies'} cleared, in-flight dropped`,
    );
    this.recorder.record({ type: 'resync', mode: 'full', reason: resync.reason, ...(resync.to ? { to: resync.to } : {}), evicted });
  }

  private apply(message: InvalidationMessage): void {
    const { local, recorder } = this;
    switch (message.kind) {
      case 'module': {
        const aliases = new Set<string>();
        const urls: string[] = [];
        for (const raw of message.urls) {
          const url = this.canonical(raw);
          if (!url || !local.realms.findKnown(url)) continue;
          urls.push(url);
          aliases.add(local.urls.alias(url));
        }
        local.forgetModules(aliases);
        recorder.record({ type: 'remote-invalidated', kind: 'module', realm: message.realm, urls, origin: message.origin });
        return;
      }
      case 'realm': {
        // A realm message clears that realm and every registered realm nested under its prefix.
        local.forgetRealm(message.realm);
        recorder.record({ type: 'remote-invalidated', kind: 'realm', realm: message.realm, urls: [], origin: message.origin });
        return;
      }
      case 'global':
        local.forgetAll();
        recorder.record({ type: 'remote-invalidated', kind: 'global', urls: [], origin: message.origin });
    }
  }

  private canonical(url: string): string | undefined {
    try {
      return this.local.urls.canonical(url);
    } catch {
      return undefined;
    }
  }
}
