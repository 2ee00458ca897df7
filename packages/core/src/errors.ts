/** Typed errors: each names what was at fault and, where it helps, the valid options. */

export class MoreauError extends Error {
  override name = 'MoreauError';
}

/** A backend has no lowering for a primitive. */
export class UnsupportedPrimitiveError extends MoreauError {
  override name = 'UnsupportedPrimitiveError';
  constructor(
    readonly primitive: string,
    readonly backend: string,
  ) {
    super(`backend '${backend}' has no lowering for primitive '${primitive}'`);
  }
}

/** No backend could be created; lists every candidate and why it failed. */
export class BackendUnavailableError extends MoreauError {
  override name = 'BackendUnavailableError';
  constructor(
    message: string,
    readonly failures: ReadonlyArray<{ name: string; reason: string }>,
  ) {
    super(message);
  }
}

/** Shapes or dtypes that a primitive cannot accept. */
export class ShapeError extends MoreauError {
  override name = 'ShapeError';
}

/** Bad user input: a file, field or option with the wrong value. Names what was expected. */
export class InputError extends MoreauError {
  override name = 'InputError';
  constructor(
    message: string,
    readonly file?: string,
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The operation was cancelled through an AbortSignal. */
export class AbortError extends MoreauError {
  override name = 'AbortError';
  constructor(message = 'the operation was aborted') {
    super(message);
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError();
}

/** A run that would need more memory than there is, refused before it starts; names both numbers. */
export class MemoryLimitError extends MoreauError {
  override name = 'MemoryLimitError';
  constructor(
    message: string,
    /** Estimated bytes the run needs. */
    readonly needed: number,
    /** Bytes available when it was checked. */
    readonly available: number,
  ) {
    super(message);
  }
}
