/**
 * Progress on stderr: a bar with ETA per long phase when stderr is a terminal, plain
 * "phase: done/total" lines (at most every few seconds) otherwise, nothing with --quiet.
 */
import cliProgress from 'cli-progress';

export interface ProgressEvent {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

export type ProgressSink = (p: ProgressEvent) => void;

export class ProgressReporter {
  private bar: cliProgress.SingleBar | undefined;
  private phase = '';
  private lastLine = 0;

  constructor(private readonly quiet: boolean) {}

  readonly update: ProgressSink = (p) => {
    if (this.quiet) return;
    if (!process.stderr.isTTY) {
      const now = Date.now();
      if (p.phase !== this.phase || p.done === p.total || now - this.lastLine > 5000) {
        process.stderr.write(`${p.phase}: ${p.done}/${p.total}\n`);
        this.lastLine = now;
        this.phase = p.phase;
      }
      return;
    }
    if (p.phase !== this.phase || !this.bar) {
      this.stop();
      this.phase = p.phase;
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${p.phase.padEnd(34).slice(0, 34)} {bar} {value}/{total} | {percentage}% | ETA {eta_formatted}`,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(p.total, p.done);
    } else {
      this.bar.setTotal(p.total);
      this.bar.update(p.done);
    }
    if (p.done >= p.total) this.stop();
  };

  /** A one-line message on stderr (suppressed by --quiet). */
  note(message: string): void {
    if (this.quiet) return;
    this.stop();
    process.stderr.write(`${message}\n`);
  }

  stop(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
      this.phase = '';
    }
  }
}
