/**
 * SentencePiece model files (`tokenizer.model`, the protobuf LLaMA-1 / Llama-2 Hugging Face folders
 * ship): decoded with the official sentencepiece_model.proto (embedded as a protobufjs JSON
 * descriptor, see scripts/gen-sentencepiece-descriptor.mjs) into the same SentencePieceTokenizer the
 * GGUF vocabularies give, so the ids are those of sentencepiece's BPE.
 *
 * Supported: BPE models (LLaMA's), with byte fallback or not, `add_dummy_prefix` either way, the
 * "identity" normalizer without whitespace collapsing. Anything that would change the segmentation
 * and is not implemented (unigram models, NFKC normalization rules, collapsing whitespace, whitespace
 * as suffix) is an error naming the field, not a silently different tokenizer.
 */
import protobuf from 'protobufjs/light.js';
import { brief, describeError, FormatError } from '../formats/errors.js';
import { readWholeFile } from '../formats/io.js';
import { PieceType, SentencePieceTokenizer, type SentencePieceVocab } from './sentencepiece.js';
import { SENTENCEPIECE_DESCRIPTOR_JSON } from './sentencepiece-descriptor.js';

let root: protobuf.Root | undefined;

function modelProto(): protobuf.Type {
  root ??= protobuf.Root.fromJSON(JSON.parse(SENTENCEPIECE_DESCRIPTOR_JSON) as protobuf.INamespace);
  return root.lookupType('sentencepiece.ModelProto');
}

/** TrainerSpec.ModelType values. */
const MODEL_TYPES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

interface DecodedPiece {
  piece: string;
  score: number;
  type: number;
}

/** Most pieces accepted (real vocabularies have 32k - 256k). */
const MAX_PIECES = 1 << 22;

/** Parse `tokenizer.model` bytes into a SentencePieceTokenizer. `file` names the source in errors. */
export function parseSentencePieceModel(bytes: Uint8Array, file = 'tokenizer.model'): SentencePieceTokenizer {
  const fail = (detail: string, field?: string): never => {
    throw new FormatError(file, detail, field ? { field } : undefined);
  };
  let m: Record<string, any>;
  try {
    m = modelProto().decode(bytes) as unknown as Record<string, any>;
  } catch (e) {
    return fail(`is not a SentencePiece model protobuf (${describeError(e)})`);
  }
  const pieces = (m.pieces ?? []) as DecodedPiece[];
  if (pieces.length === 0) fail('has no pieces (not a SentencePiece model?)', 'pieces');
  if (pieces.length > MAX_PIECES) fail(`has ${pieces.length} pieces, more than ${MAX_PIECES}`, 'pieces');
  const trainer = (m.trainerSpec ?? {}) as Record<string, any>;
  const normalizer = (m.normalizerSpec ?? {}) as Record<string, any>;
  const modelType = Number(trainer.modelType ?? 1);
  if (modelType !== 2) {
    fail(
      `trainer_spec.model_type is ${MODEL_TYPES[modelType] ?? modelType}; only BPE SentencePiece models (LLaMA's) are supported`,
      'trainer_spec.model_type',
    );
  }
  const name = String(normalizer.name ?? 'identity');
  if (name !== 'identity' && name !== '') {
    fail(
      `normalizer_spec.name is ${brief(name)}; only the "identity" normalizer (LLaMA's) is supported`,
      'normalizer_spec.name',
    );
  }
  if (normalizer.removeExtraWhitespaces !== false) {
    fail(
      'normalizer_spec.remove_extra_whitespaces is true; collapsing whitespace is not supported (LLaMA sets it false)',
      'normalizer_spec.remove_extra_whitespaces',
    );
  }
  if (normalizer.escapeWhitespaces === false) {
    fail('normalizer_spec.escape_whitespaces is false; not supported', 'normalizer_spec.escape_whitespaces');
  }
  if (trainer.treatWhitespaceAsSuffix === true) {
    fail(
      'trainer_spec.treat_whitespace_as_suffix is true; not supported',
      'trainer_spec.treat_whitespace_as_suffix',
    );
  }
  const n = pieces.length;
  const tokens: string[] = new Array(n);
  const scores = new Float32Array(n);
  const tokenTypes = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const p = pieces[i]!;
    // (Empty pieces are tolerated: the Llama-2 vocabulary as converted to GGUF has one, id 30143.)
    if (typeof p.piece !== 'string') fail(`piece ${i} has no text`, 'pieces');
    if (!Number.isFinite(p.score)) fail(`piece ${i} (${brief(p.piece)}) has score ${p.score}`, 'pieces');
    const type = Number(p.type ?? PieceType.NORMAL);
    if (!(type >= 1 && type <= 6)) fail(`piece ${i} (${brief(p.piece)}) has unknown type ${type}`, 'pieces');
    tokens[i] = p.piece;
    scores[i] = p.score;
    tokenTypes[i] = type;
  }
  const id = (key: string, field: string, dflt: number): number | undefined => {
    const v = trainer[key] ?? dflt;
    if (v === -1) return undefined;
    if (!(Number.isInteger(v) && v >= 0 && v < n)) {
      fail(
        `trainer_spec.${field} is ${brief(v)}, not a piece id (the model has ${n} pieces)`,
        `trainer_spec.${field}`,
      );
    }
    return v;
  };
  const unkId = id('unkId', 'unk_id', 0);
  const bosId = id('bosId', 'bos_id', 1);
  const eosId = id('eosId', 'eos_id', 2);
  const padId = id('padId', 'pad_id', -1);
  const vocab: SentencePieceVocab = {
    tokens,
    scores,
    tokenTypes,
    ...(bosId !== undefined ? { bosId } : {}),
    ...(eosId !== undefined ? { eosId } : {}),
    ...(unkId !== undefined ? { unkId } : {}),
    ...(padId !== undefined ? { padId } : {}),
    addSpacePrefix: normalizer.addDummyPrefix !== false,
  };
  return new SentencePieceTokenizer(vocab);
}

/** Read a `tokenizer.model` file. */
export async function loadSentencePieceModel(file: string): Promise<SentencePieceTokenizer> {
  return parseSentencePieceModel(await readWholeFile(file), file);
}

/**
 * Encode a vocabulary as a SentencePiece model protobuf with LLaMA's settings (BPE, byte fallback,
 * identity normalizer, whitespace kept): the inverse of parseSentencePieceModel. For tests and tools.
 */
export function encodeSentencePieceModel(tok: SentencePieceTokenizer): Uint8Array {
  const type = modelProto();
  const msg = {
    pieces: tok.tokens.map((piece, i) => ({ piece, score: tok.scores[i]!, type: tok.tokenTypes[i]! })),
    trainerSpec: {
      modelType: 2,
      vocabSize: tok.vocabSize,
      byteFallback: tok.tokenTypes.includes(PieceType.BYTE),
      unkId: tok.unkId ?? -1,
      bosId: tok.bosId ?? -1,
      eosId: tok.eosId ?? -1,
      padId: tok.padId ?? -1,
    },
    normalizerSpec: {
      name: 'identity',
      addDummyPrefix: tok.addSpacePrefix,
      removeExtraWhitespaces: false,
      escapeWhitespaces: true,
    },
  };
  const err = type.verify(msg);
  if (err) throw new Error(`encodeSentencePieceModel: ${err}`);
  return type.encode(type.fromObject(msg)).finish();
}
