/**
 * Float32 state per parameter (e.g. Moreau's delta and its running average) that lives in memory
 * while it fits, and otherwise on disk, one parameter per file, read and written a layer at a time.
 */
import { InputError, MoreauError } from '../errors.js';
import { gib } from './memory.js';

export interface ParamStateOptions {
  /** Keep the state in this folder (created when missing). Default: a temp folder when spilling. */
  readonly dir?: string;
  /** Spill to disk even if the state would fit in memory. */
  readonly spill?: boolean;
}

type Fs = typeof import('node:fs/promises');

/** A named float32 array per parameter; absent entries read as zeros. */
export class ParamState {
  private readonly memory = new Map<string, Float32Array>();
  private readonly onDisk = new Set<string>();

  private constructor(
    /** Where spilled state lives; undefined when it is held in memory. */
    readonly dir: string | undefined,
    private readonly fs: Fs | undefined,
    private readonly ownsDir: boolean,
  ) {}

  /**
   * State in memory when `bytes` fits in `budget`, else on disk (options.dir or a temp folder).
   * A folder that cannot be written is an error before any work starts.
   */
  static async create(bytes: number, budget: number, options: ParamStateOptions = {}): Promise<ParamState> {
    // A folder says where spilled state goes; state that fits stays in memory either way.
    if (!options.spill && bytes <= budget) return new ParamState(undefined, undefined, false);
    const fs = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    let dir: string;
    let owns: boolean;
    if (options.dir) {
      dir = options.dir;
      await fs.mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
        throw new InputError(
          `--state-dir '${dir}' cannot be created (${e.code ?? e.message})`,
          dir,
          'stateDir',
        );
      });
      dir = await fs.mkdtemp(join(dir, 'moreau-state-'));
      owns = true;
    } else {
      dir = await fs.mkdtemp(join(tmpdir(), 'moreau-state-'));
      owns = true;
    }
    try {
      await fs.writeFile(join(dir, '.probe'), 'ok');
      await fs.rm(join(dir, '.probe'));
    } catch (e) {
      throw new InputError(
        `the state folder '${dir}' is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
          `${gib(bytes)} of criterion state must go to disk`,
        dir,
        'stateDir',
      );
    }
    return new ParamState(dir, fs, owns);
  }

  get spilled(): boolean {
    return this.dir !== undefined;
  }

  private file(key: string): string {
    return `${this.dir}/${encodeURIComponent(key)}.f32`;
  }

  /** The array stored under `key` (zeros of `length` when nothing was stored). */
  async get(key: string, length: number): Promise<Float32Array> {
    if (!this.fs) {
      let a = this.memory.get(key);
      if (!a) {
        a = new Float32Array(length);
        this.memory.set(key, a);
      }
      return a;
    }
    if (!this.onDisk.has(key)) return new Float32Array(length);
    const buf = await this.fs.readFile(this.file(key));
    if (buf.byteLength !== length * 4) {
      throw new MoreauError(
        `state file ${this.file(key)} holds ${buf.byteLength} bytes, expected ${length * 4}`,
      );
    }
    return new Float32Array(buf.buffer, buf.byteOffset, length);
  }

  /** Stores `data` under `key` (in memory: keeps the array itself). */
  async set(key: string, data: Float32Array): Promise<void> {
    if (!this.fs) {
      this.memory.set(key, data);
      return;
    }
    try {
      await this.fs.writeFile(this.file(key), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new InputError(
        code === 'ENOSPC'
          ? `the state folder '${this.dir}' is full (writing ${gib(data.byteLength)} for ${key}); free space or pass --state-dir on a larger disk`
          : `cannot write criterion state to '${this.dir}' (${code ?? (e as Error).message})`,
        this.dir,
        'stateDir',
      );
    }
    this.onDisk.add(key);
  }

  delete(key: string): void {
    this.memory.delete(key);
  }

  /** Frees memory and removes the folder this store created. */
  async dispose(): Promise<void> {
    this.memory.clear();
    if (this.fs && this.dir && this.ownsDir) await this.fs.rm(this.dir, { recursive: true, force: true });
  }
}
