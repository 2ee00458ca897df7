/**
 * Plan files of any size. A 7B model's unstructured masks take about 1 GB of base64, more than a
 * JavaScript string can hold, so plans are written chunk by chunk, and a file too large for one
 * string is read line by line in the layout the writer uses (header fields, then one group or mask
 * per line), each mask decoded to its bitset as soon as its line is read.
 */
import { InputError } from '../errors.js';
import {
  type MatrixMask,
  type PruningPlan,
  parseMaskEntry,
  parsePlan,
  planFromJSON,
  planToJSONChunks,
} from './plan.js';
import { isElementScope, parseScope } from './scope.js';

/** Files up to this size are parsed as one string (far below V8's ~512 M character limit). */
const WHOLE_FILE_BYTES = 128 * 1024 * 1024;

/** Writes a plan atomically (a temporary file renamed into place), chunk by chunk. */
export async function writePlanFile(file: string, plan: PruningPlan): Promise<void> {
  const { open, rename, rm } = await import('node:fs/promises');
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const handle = await open(tmp, 'w');
  try {
    for (const chunk of planToJSONChunks(plan)) await handle.write(chunk);
    await handle.close();
    await rename(tmp, file);
  } catch (e) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Reads and validates a plan file (version 1 or 2) of any size; errors name the file and field. */
export async function readPlanFile(file: string): Promise<PruningPlan> {
  const { readFile, stat } = await import('node:fs/promises');
  const size = (await stat(file).catch(() => undefined))?.size;
  if (size === undefined) throw new InputError(`plan '${file}' not found`, file);
  if (size <= WHOLE_FILE_BYTES) return parsePlan(await readFile(file, 'utf8'), file);
  return readPlanLines(file);
}

/** The line-by-line reader (exported for tests; readPlanFile picks it for large files). */
export async function readPlanLines(file: string): Promise<PruningPlan> {
  const { createReadStream } = await import('node:fs');
  const { createInterface } = await import('node:readline');
  const notOurs = (why: string): never => {
    throw new InputError(
      `${file}: too large to parse as one string, and not in the layout moreau writes (${why})`,
      file,
    );
  };
  const header: string[] = [];
  const groups: unknown[] = [];
  const masks: MatrixMask[] = [];
  const seen = new Set<string>();
  type Section = 'start' | 'header' | 'groups' | 'afterGroups' | 'masks' | 'afterMasks' | 'end';
  let section: Section = 'start';
  const entry = (line: string) => JSON.parse(line.trim().replace(/,$/, '')) as unknown;
  // A list opens on its key's line, and is either empty there ('[]') or closes on a line '  ]'.
  const open = (line: string, key: string, inside: Section, after: Section): Section =>
    line.startsWith(`  "${key}": [`)
      ? /\[\],?$/.test(line.trim())
        ? after
        : inside
      : notOurs(`expected '"${key}": [' but read '${line.slice(0, 40)}'`);
  for await (const line of createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity })) {
    switch (section) {
      case 'start':
        if (line.trim() !== '{') notOurs("the first line is not '{'");
        section = 'header';
        break;
      case 'header':
        if (line.startsWith('  "groups": [')) section = open(line, 'groups', 'groups', 'afterGroups');
        else header.push(line.trim().replace(/,$/, ''));
        break;
      case 'groups':
        if (line.startsWith('  ]')) section = 'afterGroups';
        else groups.push(entry(line));
        break;
      case 'afterGroups':
        section = open(line, 'masks', 'masks', 'afterMasks');
        break;
      case 'masks':
        if (line.startsWith('  ]')) section = 'afterMasks';
        else masks.push(parseMaskEntry(entry(line), masks.length, file, seen));
        break;
      case 'afterMasks':
        if (line.trim() !== '}') notOurs(`unexpected line after the masks: '${line.slice(0, 40)}'`);
        section = 'end';
        break;
      case 'end':
        if (line.trim() !== '') notOurs('text after the closing brace');
    }
  }
  if (section !== 'end') notOurs('it ends early');
  let head: Record<string, unknown>;
  try {
    head = JSON.parse(`{${header.join(',')}}`);
  } catch (e) {
    return notOurs(`its header does not parse: ${(e as Error).message}`);
  }
  // Everything but the (already decoded) masks goes through the ordinary validation.
  const plan = planFromJSON({ ...head, groups, masks: [] }, file);
  if (masks.length && !isElementScope(parseScope(plan.scope)))
    throw new InputError(
      `${file}: field 'masks' must be empty for scope ${plan.scope} (it uses groups)`,
      file,
      'masks',
    );
  return { ...plan, masks };
}
