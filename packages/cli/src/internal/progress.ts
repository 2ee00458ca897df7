/**
 * Progress on stderr: a bar with ETA per long phase when stderr is a terminal, plain
 * "phase: done/total (ETA ...)" lines (at most every few seconds) otherwise, nothing with --quiet.
 * stdout carries results only.
 */
import cliProgress from 'cli-progress';

export interface ProgressEvent {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
  /** What is counted ("windows"); default: inferred from the phase. */
  readonly unit?: string;
  /** Shown after the counts, e.g. "loss 2.31 | 1,204 tok/s" (may change with every update). */
  readonly detail?: string;
}

/** What a phase counts, for "8/6299 windows". */
export function unitOf(p: ProgressEvent): string {
  if (p.unit !== undefined) return p.unit;
  const phase = p.phase;
  if (/perplexity$/.test(phase)) return 'windows';
  if (/per-sample gradients$/.test(phase)) return 'windows';
  if (/: score$/.test(phase)) return 'requests';
  if (/steps$/.test(phase)) return '';
  if (/(^|: )prune$/.test(phase)) return 'steps';
  if (/gradient$/.test(phase)) return 'passes';
  return 'steps';
}

export type ProgressSink = (p: ProgressEvent) => void;

/** "1m05s" style durations for the plain-line ETA. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** The phase column of a bar: padded to 40, long phases kept up to 72 characters. */
const label = (phase: string) => (phase.length > 72 ? `${phase.slice(0, 71)}…` : phase.padEnd(40));

export class ProgressReporter {
  private bar: cliProgress.SingleBar | undefined;
  private phase = '';
  private lastLine = 0;
  private phaseStart = 0;
  private startDone = 0;
  /** Prefixed to every phase (e.g. "[3/12] taylor 0.2: "), so nested phases keep their context. */
  prefix = '';

  constructor(
    private readonly quiet: boolean,
    private readonly tty: boolean = Boolean(process.stderr.isTTY),
    private readonly write: (s: string) => void = (s) => {
      process.stderr.write(s);
    },
  ) {}

  readonly update: ProgressSink = (event) => {
    if (this.quiet) return;
    const unit = unitOf(event);
    const u = unit ? ` ${unit}` : '';
    const p = { ...event, phase: `${this.prefix}${event.phase}` };
    if (!this.tty) {
      const now = Date.now();
      if (p.phase !== this.phase) {
        this.phase = p.phase;
        this.phaseStart = now;
        this.startDone = p.done;
        this.lastLine = 0;
      }
      if (p.done >= p.total || now - this.lastLine > 5000) {
        const rate = (p.done - this.startDone) / Math.max(1e-3, (now - this.phaseStart) / 1000);
        const eta =
          p.done >= p.total ? '' : rate > 0 ? ` (ETA ${formatDuration((p.total - p.done) / rate)})` : '';
        this.write(`${p.phase}: ${p.done}/${p.total}${u}${p.detail ? ` | ${p.detail}` : ''}${eta}\n`);
        this.lastLine = now;
      }
      return;
    }
    if (p.phase !== this.phase || !this.bar) {
      this.stop();
      if (p.done >= p.total) {
        // A phase that completes in one step: a line, not a bar (whose ETA would be undefined).
        this.write(`${label(p.phase)} ${p.done}/${p.total}${u}${p.detail ? ` | ${p.detail}` : ''} | done\n`);
        return;
      }
      this.phase = p.phase;
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${label(p.phase)} {bar} {value}/{total}${u} | {percentage}%${p.detail === undefined ? '' : ' | {detail}'} | ETA {eta_formatted}`,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
          barsize: 24,
          // Keep redrawing (and the ETA counting) while one long step runs.
          etaAsynchronousUpdate: true,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.total, p.done, { detail: p.detail ?? '' });
    } else {
      this.bar.setTotal(p.total);
      this.bar.update(p.done, { detail: p.detail ?? '' });
    }
    if (p.done >= p.total) this.stop();
  };

  /** A one-line message on stderr (suppressed by --quiet). */
  note(message: string): void {
    if (this.quiet) return;
    this.stop();
    this.write(`${message}\n`);
  }

  /** A warning on stderr: "warning: <message>", printed even with --quiet. */
  warn(message: string): void {
    this.stop();
    this.write(`warning: ${message}\n`);
  }

  stop(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
    this.phase = '';
  }
}
