import { Logger } from '@nestjs/common';
import { Subscription } from 'rxjs';
import type { ModuleCacheInvalidationListener } from '../listener/invalidation-listener';
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
      listener.resync$.subscribe(() => {
        // Notifications sent while we were not listening are lost: assume everything changed.
        this.local.forgetAll();
        this.logger.log('listener (re)connected: resynced (global generation bumped, memory cleared, in-flight dropped)');
        this.recorder.record({ type: 'resync' });
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
