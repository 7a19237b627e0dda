// Sum or max of v over a workgroup, returned to every invocation; included by norm.wgsl and
// reduce.wgsl (`#include workgroup_reduce`). Not a kernel on its own. The including file defines
// `const WG` (its workgroup size) and, with SUBGROUPS, passes the subgroup builtins (subgroups are
// taken to be contiguous runs of local_invocation_index); without SUBGROUPS, sg_lane / sg_size are unused.

var<workgroup> scratch: array<f32, WG + 1u>;

// is_max: the maximum, else the sum (the tree without SUBGROUPS needs WG a power of two)
fn workgroup_reduce(v: f32, is_max: bool, lid: u32, sg_lane: u32, sg_size: u32) -> f32 {
#if SUBGROUPS
  let s = select(subgroupAdd(v), subgroupMax(v), is_max);
  if (sg_lane == 0u) { scratch[lid / sg_size] = s; }
  workgroupBarrier();
  // one invocation combines the per-subgroup results (per-lane workgroup loads are slow on CPU adapters)
  if (lid == 0u) {
    var t = scratch[0];
    for (var i = 1u; i < WG / sg_size; i++) { t = select(t + scratch[i], max(t, scratch[i]), is_max); }
    scratch[WG] = t;
  }
  workgroupBarrier();
  let total = scratch[WG];
#else
  scratch[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let o = scratch[lid + stride];
      scratch[lid] = select(scratch[lid] + o, max(scratch[lid], o), is_max);
    }
    workgroupBarrier();
  }
  let total = scratch[0];
#endif
  workgroupBarrier(); // scratch is reused by the next call
  return total;
}
