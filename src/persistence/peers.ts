import type { SqlRunner } from './sql';
import { ACKNOWLEDGE, AWAITED_PEERS, LEAVE, PEER_SUMMARY, RENEW_LEASE, UNACKNOWLEDGED } from './statements';

/** This process as a member (`consistency: 'strong'`): the same fields as the membership's config. */
export interface PeerStoreConfig {
  /** This process's origin id: its row in module_cache_peers. */
  id: string;
  applicationName: string;
  leaseMs: number;
  /** Where an acknowledgement wakes the invalidators waiting for it. */
  ackChannel: string;
}

/** A sync marker as heard: the invalidation's sequence and the fence-log token it carried. */
export interface SyncMarker {
  seq: string;
  token: string;
}

/** This process's row in module_cache_peers (lease, acknowledgements), and what it sees of the others. */
export class PeerStore {
  constructor(
    private readonly sql: SqlRunner,
    private readonly config: PeerStoreConfig,
  ) {}

  /**
   * Renews this process's lease (now + `leaseMs`, by the database clock); `join` (after every
   * (re)connect) also says it has applied every invalidation committed so far. Peers whose lease
   * ended an hour ago are forgotten on the way.
   */
  async renewLease({ join }: { join: boolean }): Promise<void> {
    const { id, applicationName, leaseMs } = this.config;
    await this.sql.run(RENEW_LEASE, [id, applicationName, leaseMs, join]);
  }

  /**
   * Records that this process applied everything up to the highest of `markers` whose token is
   * its invalidation's (a forged marker counts for nothing), and wakes the invalidators waiting
   * on it. Returns the sequence recorded, or undefined when no marker was genuine. Committed
   * without waiting for the WAL flush: an acknowledgement lost in a crash only makes an
   * invalidator wait for a lease, and every peer joins again after the server comes back.
   */
  async acknowledge(markers: SyncMarker[]): Promise<string | undefined> {
    const [row] = await this.sql.run<{ acked: string }>(ACKNOWLEDGE, [
      this.config.id,
      markers.map((m) => m.seq),
      markers.map((m) => m.token),
      this.config.ackChannel,
    ]);
    return row?.acked;
  }

  /**
   * Live peers (not this process), those of them that have not acknowledged `seq`, and how long
   * until the first of the latter's leases ends (database clock).
   */
  async awaitedPeers(seq: string): Promise<{ live: number; waiting: string[]; expiresInMs: number }> {
    const [row] = await this.sql.run<{ live: number; waiting: string[] | null; expires_in_ms: number | null }>(AWAITED_PEERS, [
      this.config.id,
      seq,
    ]);
    return { live: row.live, waiting: row.waiting ?? [], expiresInMs: Math.max(0, row.expires_in_ms ?? 0) };
  }

  /** How many of `ids` have not acknowledged `seq` (their lease ran out instead, or they left). */
  async unacknowledged({ ids, seq }: { ids: string[]; seq: string }): Promise<number> {
    const [row] = await this.sql.run<{ n: number }>(UNACKNOWLEDGED, [ids, seq]);
    return row.n;
  }

  /** Live peers besides this process, and how many of them have not acknowledged the latest invalidation. */
  async peerSummary(): Promise<{ peers: number; lagging: number }> {
    const [row] = await this.sql.run<{ peers: number; lagging: number }>(PEER_SUMMARY, [this.config.id]);
    return row;
  }

  async leave(): Promise<void> {
    await this.sql.run(LEAVE, [this.config.id]);
  }
}
