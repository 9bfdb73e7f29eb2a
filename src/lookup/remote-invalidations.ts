import type { Logger } from '@nestjs/common';
import { Subscription } from 'rxjs';
import type { ModuleCacheInvalidationListener } from '../broadcast/invalidation-listener';
import type { InvalidationMessage } from '../broadcast/invalidation-message';
import type { ModuleCacheEvent } from '../observability/events';
import type { RealmRegistry, UrlResolver } from './urls';

export interface RemoteInvalidationHandlers {
  origin: string;
  realms: RealmRegistry;
  urls: UrlResolver;
  logger: Logger;
  forgetModules(aliases: Iterable<string>): void;
  forgetRealm(realm: string): void;
  forgetAll(): void;
  received(): void;
  emit(event: ModuleCacheEvent): void;
  /** Strong consistency: acknowledge a peer's sync marker (everything before it has been applied). */
  acknowledge?(seq: string, token: string): void;
}

/**
 * Turns the listener's messages into local effects. Payloads are untrusted hints: only URLs
 * inside registered realms are applied, so a stranger on the channel can at worst cause
 * recomputations, never unbounded state.
 */
export function subscribeToInvalidations(listener: ModuleCacheInvalidationListener, handlers: RemoteInvalidationHandlers): Subscription {
  const subscription = new Subscription();
  subscription.add(
    listener.notifications$.subscribe((message) => {
      // Our own echo: applied before the NOTIFY was sent. (The seed's format has no origin: applied again, harmlessly.)
      if (message.origin !== undefined && message.origin === handlers.origin) return;
      handlers.received();
      try {
        apply(message, handlers);
      } catch (error) {
        handlers.logger.warn(`ignored an invalidation message: ${error instanceof Error ? error.message : String(error)}`);
      }
    }),
  );
  subscription.add(
    listener.resync$.subscribe(() => {
      // Notifications sent while we were not listening are lost: assume everything changed.
      handlers.forgetAll();
      handlers.logger.log('listener (re)connected: resynced (global generation bumped, memory cleared, in-flight dropped)');
      handlers.emit({ type: 'resync' });
    }),
  );
  subscription.add(listener.state$.subscribe((state) => handlers.emit({ type: 'listener-state', state })));
  if (handlers.acknowledge) {
    const acknowledge = handlers.acknowledge;
    subscription.add(
      listener.syncs$.subscribe((sync) => {
        if (sync.origin !== handlers.origin) acknowledge(sync.seq, sync.token);
      }),
    );
  }
  return subscription;
}

function apply(message: InvalidationMessage, handlers: RemoteInvalidationHandlers): void {
  switch (message.kind) {
    case 'module': {
      const aliases = new Set<string>();
      const urls: string[] = [];
      for (const raw of message.urls) {
        const url = safeCanonical(raw, handlers.urls);
        if (!url || !handlers.realms.find(url)) continue;
        urls.push(url);
        aliases.add(handlers.urls.alias(url));
      }
      handlers.forgetModules(aliases);
      handlers.emit({ type: 'remote-invalidated', kind: 'module', realm: message.realm, urls, origin: message.origin });
      return;
    }
    case 'realm': {
      // A realm message clears that realm and every registered realm nested under its prefix.
      handlers.forgetRealm(message.realm);
      handlers.emit({ type: 'remote-invalidated', kind: 'realm', realm: message.realm, urls: [], origin: message.origin });
      return;
    }
    case 'global':
      handlers.forgetAll();
      handlers.emit({ type: 'remote-invalidated', kind: 'global', urls: [], origin: message.origin });
  }
}

function safeCanonical(url: string, urls: UrlResolver): string | undefined {
  try {
    return urls.canonical(url);
  } catch {
    return undefined;
  }
}
