import { InputError } from '@moreau/core';

/** Longest `detail` a FormatError keeps (hostile files must not produce megabyte messages). */
export const MAX_DETAIL_CHARS = 2000;

/**
 * The one error type of the model readers and writers. Its message always starts with the file it is
 * about, then says which field or tensor is wrong and what was expected. A bad-input error: it extends
 * core's InputError, so callers handle it like every other InputError. Messages are bounded in length:
 * a longer detail is cut, saying how much was left out.
 */
export class FormatError extends InputError {
  override readonly name = 'FormatError';
  /** The file (or directory) the problem is in. */
  declare readonly file: string;
  /** What is wrong, without the file name. */
  readonly detail: string;

  constructor(file: string, detail: string, options?: { cause?: unknown; field?: string }) {
    const d = boundText(detail, MAX_DETAIL_CHARS);
    super(
      `${boundText(file, 500)}: ${d}`,
      file,
      options?.field,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.detail = d;
  }
}

/** `s` cut to `max` characters, saying how many were left out. */
export function boundText(s: string, max: number): string {
  if (s.length <= max) return s;
  return `${s.slice(0, max)}... (${s.length - max} more characters)`;
}

/** A JSON value for an error message, at most `max` characters (huge arrays and strings are cut). */
export function brief(value: unknown, max = 80): string {
  let s: string;
  if (typeof value === 'number' || typeof value === 'bigint') {
    s = String(value);
  } else if (Array.isArray(value) && value.length > 16) {
    s = `[${value
      .slice(0, 8)
      .map((v) => brief(v, 20))
      .join(', ')}, ... (${value.length} entries)]`;
  } else if (typeof value === 'string' && value.length > max) {
    s = JSON.stringify(value.slice(0, max));
  } else {
    try {
      s = JSON.stringify(value) ?? String(value);
    } catch {
      s = String(value);
    }
  }
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

/** Describe an unknown thrown value in one line (for wrapping I/O errors). */
export function describeError(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return boundText(s.split('\n')[0] ?? '', 300);
}
