import type { ArgumentsHost } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { MODULE_CACHE_HTTP_STATUS, ModuleCacheExceptionFilter, moduleCacheHttpStatus, type ModuleCacheError } from '../../src';
import { everyModuleCacheError } from '../support/error-classes';

/** An Express-like response that records what the filter answered. */
function httpHost(type = 'http') {
  const sent: { status?: number; body?: unknown } = {};
  const response = { status: (status: number) => ((sent.status = status), { json: (body: unknown) => (sent.body = body) }) };
  const host = { getType: () => type, switchToHttp: () => ({ getResponse: () => response }) } as unknown as ArgumentsHost;
  return { host, sent };
}

const EXPECTED: Record<number, string[]> = {
  400: ['E_INVALID_MODULE_URL', 'E_INVALID_REALM_URL', 'E_INVALID_SCOPE'],
  404: ['E_UNKNOWN_REALM', 'E_MODULE_NOT_FOUND', 'E_DEFINITION_NOT_FOUND'],
  503: ['E_DATABASE_UNAVAILABLE', 'E_DEADLINE', 'E_LEASE_RENEWAL', 'E_INVALIDATION_BROADCAST', 'E_SHUTTING_DOWN'],
};

describe('ModuleCacheExceptionFilter', () => {
  const all = everyModuleCacheError();

  it('maps every code src/errors.ts declares, and nothing else', () => {
    expect(all.length).toBeGreaterThan(15);
    const codes: string[] = all.map((e) => e.code);
    expect(
      codes.filter((code) => !(code in MODULE_CACHE_HTTP_STATUS)),
      'codes without a status',
    ).toEqual([]);
    expect(
      Object.keys(MODULE_CACHE_HTTP_STATUS).filter((code) => !codes.includes(code)),
      'statuses of codes that do not exist',
    ).toEqual([]);
  });

  it('bad input is 400, an unknown realm or a missing module 404, the database or listener down 503', () => {
    for (const [status, codes] of Object.entries(EXPECTED)) {
      for (const code of codes) expect({ code, status: MODULE_CACHE_HTTP_STATUS[code] }).toEqual({ code, status: Number(status) });
    }
  });

  it('answers every error with { statusCode, code, message } and its status', () => {
    for (const error of all) {
      const { host, sent } = httpHost();
      new ModuleCacheExceptionFilter().catch(error, host);
      expect(sent).toEqual({
        status: MODULE_CACHE_HTTP_STATUS[error.code],
        body: { statusCode: sent.status, code: error.code, message: error.message },
      });
    }
  });

  it('answers 500 for a code it does not know, and rethrows outside HTTP', () => {
    const future = Object.assign(Object.create(all[0]) as ModuleCacheError, { code: 'E_FROM_THE_FUTURE' as const });
    expect(moduleCacheHttpStatus(future)).toBe(500);
    const { host } = httpHost('rpc');
    expect(() => new ModuleCacheExceptionFilter().catch(all[0], host)).toThrow(all[0]);
  });
});
