import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as errors from '../../src/errors';
import { ModuleCacheError } from '../../src/errors';

type ErrorClass = new (...args: unknown[]) => ModuleCacheError;

/**
 * One instance of every concrete ModuleCacheError class src/errors.ts exports (built with
 * placeholder arguments), so a test over "every code" grows with the file. Checked against the
 * codes the file's text declares: a class this loop could not build would otherwise go unseen.
 */
export function everyModuleCacheError(): ModuleCacheError[] {
  const instances = (Object.values(errors) as unknown[])
    .filter((value): value is ErrorClass => typeof value === 'function' && value.prototype instanceof ModuleCacheError)
    .map((type) => new type('https://errors.test/realm/a.ts', [], 'a reason'));
  const declared = [
    ...readFileSync(path.resolve(__dirname, '../../src/errors.ts'), 'utf8').matchAll(/code(?::[^=]+)? = '(E_[A-Z_]+)'/g),
  ].map((m) => m[1]);
  const built: string[] = instances.map((error) => error.code);
  const missing = declared.filter((code) => !built.includes(code));
  if (missing.length) throw new Error(`src/errors.ts declares codes no exported class was built with: ${missing.join(', ')}`);
  return instances;
}
