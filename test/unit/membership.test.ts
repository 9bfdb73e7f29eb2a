import { Subject } from 'rxjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DedicatedConnection, RawNotification } from '../../src/connection/dedicated-connection';
import { Membership } from '../../src/consistency/membership';
import type { PeerStore } from '../../src/persistence/peers';

const ACK_CHANNEL = 'module_cache_acked';

/** A membership over a scripted repository: `awaitedPeers` answers from `answers`, in order, running each one's side effect first. */
function membershipWith(answers: Array<{ before?: () => void; waiting: string[] }>) {
  const notifications = new Subject<RawNotification>();
  const transport = { notifications$: notifications, resync$: new Subject<void>() } as unknown as DedicatedConnection;
  let calls = 0;
  const repository = {
    awaitedPeers: async () => {
      const answer = answers[Math.min(calls++, answers.length - 1)];
      answer.before?.();
      return { live: 1, waiting: answer.waiting, expiresInMs: 10_000 };
    },
    unacknowledged: async () => 0,
  } as unknown as PeerStore;
  const membership = new Membership({ id: 'me', applicationName: 'test', leaseMs: 10_000, ackChannel: ACK_CHANNEL }, repository, transport);
  return { membership, notifications, calls: () => calls };
}

describe('Membership.awaitAcknowledgements', () => {
  afterEach(() => vi.useRealTimers());

  // The peer's acknowledgement commits just after the invalidator's read of the peers, and its
  // notification arrives before the invalidator starts waiting: a wake-up that must not be lost
  // (it would make the invalidation wait for the peer's whole lease).
  it('does not lose an acknowledgement that arrives while the peers are being read', async () => {
    vi.useFakeTimers();
    const { membership, notifications, calls } = membershipWith([
      { before: () => notifications.next({ channel: ACK_CHANNEL, payload: '7' }), waiting: ['peer'] },
      { waiting: [] },
    ]);
    let result: unknown;
    void membership.awaitAcknowledgements('7').then((r) => (result = r));
    // Lets promises settle without moving the clock: the lease (10 s) never runs out here.
    await vi.advanceTimersByTimeAsync(0);
    expect(calls()).toBe(2);
    expect(result).toMatchObject({ acknowledged: 1, expired: 0 });
  });

  it('waits for an acknowledgement that comes later, and is woken by it', async () => {
    vi.useFakeTimers();
    const { membership, notifications, calls } = membershipWith([{ waiting: ['peer'] }, { waiting: [] }]);
    let result: unknown;
    void membership.awaitAcknowledgements('7').then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(0);
    expect(calls()).toBe(1);
    expect(result).toBeUndefined();
    notifications.next({ channel: ACK_CHANNEL, payload: '7' });
    await vi.advanceTimersByTimeAsync(0);
    expect(calls()).toBe(2);
    expect(result).toMatchObject({ acknowledged: 1, expired: 0 });
  });
});
