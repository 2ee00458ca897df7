import { InputError } from '@moreau/core';

/**
 * The one error type of the model readers and writers. Its message always starts with the file it is
 * about, then says which field or tensor is wrong and what was expected. A bad-input error: it extends
 * core's InputError, so callers handle it like every other InputError.
 */
export class FormatError extends InputError {
  override readonly name = 'FormatError';
  /** The file (or directory) the problem is in. */
  declare readonly file: string;
  /** What is wrong, without the file name. */
  readonly detail: string;

  constructor(file: string, detail: string, options?: { cause?: unknown }) {
    super(`${file}: ${detail}`, file, undefined, options);
    this.detail = detail;
  }
}

/** Describe an unknown thrown value in one line (for wrapping I/O errors). */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
