import { describe, expect, it } from 'vitest';
import { readServiceConfig } from '../../sample/service-config';

describe("the sample service's environment", () => {
  it('defaults: two workers on 127.0.0.1:3000, relay mode, eventual consistency, an embedded database', () => {
    expect(readServiceConfig({})).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      workers: 2,
      relay: true,
      consistency: 'eventual',
      databaseURL: undefined,
    });
  });

  it('RELAY=0 gives each worker its own connection; CONSISTENCY=strong waits for acknowledgements', () => {
    expect(readServiceConfig({ RELAY: '0', CONSISTENCY: 'strong' })).toMatchObject({ relay: false, consistency: 'strong' });
  });

  it('refuses what it would otherwise misread, naming the variable', () => {
    expect(() => readServiceConfig({ RELAY: 'yes' })).toThrow(/RELAY must be one of 1, 0, got "yes"/);
    expect(() => readServiceConfig({ CONSISTENCY: 'Strong' })).toThrow(/CONSISTENCY must be one of eventual, strong/);
    expect(() => readServiceConfig({ WORKERS: '0' })).toThrow(/WORKERS must be an integer from 1 to 64/);
    expect(() => readServiceConfig({ REALMS_URL: 'ftp://x/' })).toThrow(/REALMS_URL must be an absolute http/);
    expect(() => readServiceConfig({ REALM_DIR: '/tmp' })).toThrow(/REALM_DIR is gone/);
  });
});
