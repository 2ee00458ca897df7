/** The comparison report: what `moreau compare` writes to DIR/report.json. */
import type { CriterionDiagnostics, PruneScope, Ranking } from '@moreau/core';
import type { RobustnessReport } from '@moreau/eval';
import type { LatencyRecord, MacsRecord } from '../speed.js';

/** acc_norm is null for LAMBADA (the harness reports accuracy and perplexity there). */
export interface TaskScores {
  acc: number;
  acc_norm: number | null;
  n: number;
  ppl?: number;
  /** The metric the papers' tables use for this task (acc or acc_norm); null for other tasks. */
  paper?: number | null;
}

export interface CompareRun {
  readonly scope: PruneScope;
  readonly criterion: string;
  readonly ratio: number;
  /** Elements of every parameter (unstructured and N:M models keep their shapes). */
  readonly params_after: number;
  /** Non-zero parameters: params_after at the unit scopes, fewer at the element scopes. */
  readonly nonzero_after: number;
  /** nonzero_after / the dense model's parameters. */
  readonly params_left: number;
  readonly ppl: Record<string, number>;
  readonly nll: Record<string, number>;
  readonly tasks: Record<string, TaskScores>;
  /** Mean of the tasks' paper numbers (null when no paper task ran) over paper_tasks tasks. */
  readonly paper_average: number | null;
  readonly paper_tasks: number;
  /** MACs of one forward pass of settings.macs_seq_len tokens. */
  readonly macs: MacsRecord;
  /** Forward latency at settings.latency (null without --latency). */
  readonly latency: LatencyRecord | null;
  /** The criterion's diagnostics per scoring step (from the one scoring that serves every ratio). */
  readonly diagnostics: readonly CriterionDiagnostics[];
  readonly warnings: readonly string[];
  /** Wall time to produce and evaluate this model: scoring + cut + evaluation. */
  readonly seconds: number;
  /** Scoring time (scores do not depend on the ratio: one scoring serves every ratio of a criterion). */
  readonly score_seconds: number;
  readonly eval_seconds: number;
  /** How the criterion's gradients ran ('whole' also for criteria that need none). */
  readonly score_exec: 'whole' | 'streamed';
  /** How the evaluation ran (null when nothing was evaluated). */
  readonly exec: 'whole' | 'streamed' | null;
  /** The pruning plan, relative to the report directory. */
  readonly plan: string;
  /** The same pruned model after LoRA recovery tuning (with --tune-data), merged and evaluated. */
  readonly tuned?: TunedRun;
}

/** A pruned model after LoRA tuning: its evaluation and how the tuning went. */
export interface TunedRun {
  readonly ppl: Record<string, number>;
  readonly nll: Record<string, number>;
  readonly tasks: Record<string, TaskScores>;
  /** The papers' average over the evaluated tasks (null without them). */
  readonly paper_average: number | null;
  readonly steps: number;
  /** Mean training loss of the last step. */
  readonly train_loss: number | null;
  /** The last validation loss (with --val-set-size). */
  readonly val_loss: number | null;
  /** Tuning and evaluation time. */
  readonly seconds: number;
  readonly tune_seconds: number;
}

export interface CompareReport {
  readonly format: 'moreau-compare-report';
  /** 2: runs carry their scope and non-zero count; settings.ranking replaced settings.scope. */
  readonly version: 2;
  readonly created: string;
  readonly moreau: string;
  readonly model: {
    readonly source: string;
    readonly format: string;
    readonly params: number;
    readonly layers: number;
    readonly heads: number;
    readonly kv_heads: number;
    readonly intermediate_size: number;
    readonly vocab_size: number;
  };
  readonly backend: { readonly name: string; readonly device: string };
  readonly settings: {
    /** --preset and the repository / commit it follows (null without one). */
    readonly preset: string | null;
    readonly preset_source: {
      readonly repository: string;
      readonly commit: string;
      readonly files: readonly string[];
    } | null;
    readonly criteria: readonly string[];
    readonly ratios: readonly number[];
    readonly scopes: readonly PruneScope[];
    /** Criterion options after defaults, by criterion. */
    readonly options: Record<string, Record<string, number | boolean | string>>;
    readonly ppl_texts: Record<string, string>;
    readonly tasks: Record<string, string>;
    readonly seq_len: number;
    readonly limit: number | null;
    readonly calibration: {
      readonly source: string | null;
      /** windows | patches | replayed (--calib-tokens). */
      readonly sampling: string;
      readonly samples: number | null;
      readonly seq_len: number | null;
      readonly iterations: number;
    } | null;
    readonly seed: number;
    /** Block-scope ranking. */
    readonly ranking: Ranking;
    /** Element scopes: fraction of would-be-zeroed weights kept at random. */
    readonly keep_low_ratio: number;
    readonly attn_layers: readonly [number, number] | null;
    readonly mlp_layers: readonly [number, number] | null;
    readonly perturbations: readonly string[] | null;
    /**
     * Windows of the first perplexity text each robustness perplexity is measured on (--limit, else
     * the first 32: many pruned models are evaluated); null without --robustness. The results table
     * measures all windows (or --limit): its dense perplexity differs when these are fewer.
     */
    readonly robustness_windows?: number | null;
    readonly zeroshot_protocol: string;
    readonly ppl_join: string | null;
    readonly field: string | null;
    /** Tokens the MACs are counted for (--latency's T, else 64) and what is counted. */
    readonly macs_seq_len: number;
    readonly macs_counted: string;
    /** --latency: batch x seq_len, repeats (null without it). */
    readonly latency: {
      readonly batch: number;
      readonly seq_len: number;
      readonly repeats: number;
      readonly warmup: number;
    } | null;
    /** --exec as given: 'auto', 'whole' or 'streamed' (each run records the mode that ran). */
    readonly exec: 'auto' | 'whole' | 'streamed';
    /**
     * --compute-dtype of scoring and evaluation and how it ran: native (float32) or emulated (float16
     * / bfloat16 rounded op by op on float32 engines). Robustness keeps its float32 reference and
     * tuning runs in float32. Absent in reports written before the flag: they computed in float32.
     */
    readonly compute?: {
      readonly dtype: 'float32' | 'float16' | 'bfloat16';
      readonly precision: 'native' | 'emulated';
    };
    /** LoRA recovery of every pruned model (compare --tune-data), or null. */
    readonly tuning?: {
      readonly data: string;
      readonly kind: 'instructions' | 'text';
      readonly train_examples: number;
      readonly validation_examples: number;
      readonly lora_r: number;
      readonly lora_alpha: number;
      readonly lora_dropout: number;
      readonly lora_targets: readonly string[];
      readonly epochs: number;
      readonly max_steps: number | null;
      readonly lr: number;
      readonly batch_size: number;
      readonly micro_batch_size: number;
      readonly cutoff_len: number;
      readonly warmup_steps: number;
      readonly train_on_inputs: boolean;
    } | null;
  };
  readonly dense: {
    readonly params: number;
    readonly ppl: Record<string, number>;
    readonly nll: Record<string, number>;
    readonly tokens: Record<string, number>;
    readonly tasks: Record<string, TaskScores>;
    readonly paper_average: number | null;
    readonly paper_tasks: number;
    readonly macs: MacsRecord;
    readonly latency: LatencyRecord | null;
    readonly seconds: number;
    /** How the evaluation ran (null when nothing was evaluated). */
    readonly exec: 'whole' | 'streamed' | null;
  };
  readonly runs: readonly CompareRun[];
  /** Robustness analysis by ratio, or by 'scope ratio' with several scopes (with --robustness). */
  readonly robustness?: Record<string, RobustnessReport>;
  /** Chart files (SVG and PNG) in the report directory. */
  readonly charts: readonly string[];
  readonly seconds: number;
}

/** 'ratio 0.2', or 'channel, ratio 0.2' for a robustness key of a report with several scopes. */
export function robustnessLabel(key: string): string {
  const i = key.lastIndexOf(' ');
  return i < 0 ? `ratio ${key}` : `${key.slice(0, i)}, ratio ${key.slice(i + 1)}`;
}
