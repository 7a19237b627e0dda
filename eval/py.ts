// The few Python string semantics the official metrics rely on, where JavaScript differs:
// whitespace (str.split / str.strip use str.isspace, not \s), len() in code points, Unicode
// digits (float() and the re module's \d accept any decimal digit, not only 0-9) and float().

import { pyStrip } from '../src/generate/generate.js';

export { pyStrip };

/** The characters str.isspace() accepts, as a regex class body. */
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`);

const TRAILING = new RegExp(`[${PY_SPACE}]+$`);

/** str.rstrip() */
export function pyRstrip(text: string): string {
  return text.replace(TRAILING, '');
}

/** str.split() with no argument: split on runs of whitespace, no empty pieces. */
export function pySplit(text: string): string[] {
  return text.split(SPACE_RUN).filter((w) => w.length > 0);
}

/** len(s): code points, not UTF-16 units. */
export function pyLen(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

const DIGIT = /\p{Nd}/u;

/** The value of a Unicode decimal digit: every Nd run is made of whole 0..9 sets, so the
 *  position in its run modulo 10 is the value. */
function digitValue(ch: string): number {
  let cp = ch.codePointAt(0)!;
  let pos = 0;
  while (DIGIT.test(String.fromCodePoint(cp - 1))) {
    cp--;
    pos++;
  }
  return pos % 10;
}

/** Replaces every Unicode decimal digit by its ASCII digit. */
function asciiDigits(text: string): string {
  return text.replace(/\p{Nd}/gu, (ch) => (ch >= '0' && ch <= '9' ? ch : String(digitValue(ch))));
}

const DIGITS = '[0-9](?:_?[0-9])*';
const PY_FLOAT = new RegExp(`^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf|infinity|nan)$`, 'i');

// float() maps non-ASCII whitespace to ' ' but strips only ASCII whitespace, so the separators
// \x1c-\x1f (isspace() in Python) make it fail.
const FLOAT_SPACE = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const FLOAT_PAD = new RegExp(`^${FLOAT_SPACE}+|${FLOAT_SPACE}+$`, 'g');

/** float(text), or null where Python raises ValueError. */
export function pyFloat(text: string): number | null {
  const s = asciiDigits(text.replace(FLOAT_PAD, ''));
  if (!PY_FLOAT.test(s)) return null;
  const lower = s.toLowerCase();
  const sign = lower.startsWith('-') ? -1 : 1;
  const body = lower.replace(/^[+-]/, '');
  if (body === 'nan') return NaN;
  if (body === 'inf' || body === 'infinity') return sign * Infinity;
  return Number(s.replace(/_/g, ''));
}
