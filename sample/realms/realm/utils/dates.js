// A plain JavaScript module: parsed as JS (no type syntax), with a `var` export, a default export,
// an extensionless import of a TypeScript module ('./format') and a bare package import (not a realm dependency).
import { SEPARATOR } from './format';
import { format as formatDate } from 'date-fns';

export var EPOCH = new Date(0);

export default function describeSpan(from, to) {
  return `${formatDate(from, 'yyyy-MM-dd')}${SEPARATOR}${formatDate(to, 'yyyy-MM-dd')}`;
}
