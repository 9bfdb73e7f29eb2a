import { randomBytes } from 'node:crypto';

/** An `application_name` no other test's connection has (tests find a dedicated connection by it). */
export const uniqueName = (label: string) => `mc-test-${label}-${randomBytes(3).toString('hex')}`;

/** Listener options: a unique application name and quick reconnects. */
export const listening = (label: string) => ({ applicationName: uniqueName(label), reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
