/**
 * What core needs to know about a prunable model's structure. A model package describes its
 * coupled slices as groups; core scores, selects and cuts them without knowing the architecture.
 */

export interface GroupMember {
  /** Parameter name, e.g. 'model.layers.3.self_attn.q_proj.weight'. */
  readonly param: string;
  /** Axis of the parameter along which the unit slices lie (0 = rows of [out, in], 1 = columns). */
  readonly axis: number;
  /** Role within the group, e.g. 'q', 'k', 'v', 'o', 'gate', 'up', 'down'. */
  readonly role: string;
  /**
   * Sub-units per unit on this member (default 1). For grouped-query attention a KV group owns
   * `heads / kvHeads` query heads on q_proj / o_proj: their channel scores are summed onto the
   * KV head's channels. Unit u, sub-unit j, channel c sits at index (u * subUnits + j) * unitSize + c.
   */
  readonly subUnits?: number;
}

export type GroupKind = 'attention' | 'mlp';

export interface PrunableGroup {
  readonly kind: GroupKind;
  readonly layer: number;
  /** Number of units (KV groups / heads for attention, channels for MLP). */
  readonly units: number;
  /** Channels per unit and sub-unit (head_dim for attention, 1 for MLP). */
  readonly unitSize: number;
  readonly members: readonly GroupMember[];
}

/** Indices along the member's axis that belong to the given units, ascending. */
export function memberIndices(group: PrunableGroup, member: GroupMember, units: readonly number[]): number[] {
  const sub = member.subUnits ?? 1;
  const span = sub * group.unitSize;
  const out: number[] = [];
  for (const u of [...units].sort((a, b) => a - b)) {
    for (let i = 0; i < span; i++) out.push(u * span + i);
  }
  return out;
}
