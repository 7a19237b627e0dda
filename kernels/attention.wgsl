// Flash attention: out = softmax(q kᵀ * scale + mask) v per head, online softmax in f32,
// reading q, k, v and writing out through strided views (no copies).
//
// A view addresses element (batch b, row t, head h, dim i) at
//   off + b*batch + t*row + head(h) + i          (all in vec4 units, so every term is a multiple of 4 floats)
// with head(h) = (h div rep)*group + (h mod rep)*D4 for q and out, and head(g) = g*group for k and v
// (kv head g serves query heads g*rep .. g*rep+rep-1: GQA).
// Each workgroup owns SPW = WG*QPL "query slots" of one (batch b, kv head g): slot s is query row
// s div rep of head g*rep + s mod rep, so the rep heads sharing a kv head share every K/V load.
// Causal: query row t sits at absolute position pos0 + t and sees keys j <= pos0 + t.
//
// Variants (defines):
//   D4       head dim / 4
//   WG       workgroup size of the attention pass
//   QPL      query slots per lane (software recipe: each loaded key word feeds QPL queries; 1 otherwise)
//   SUBGROUPS  'software' recipe (lavapipe): no shared memory; each lane loads one of 8 key rows and
//              the others receive it with subgroupBroadcast from a constant lane. Needs subgroup size >= 8.
//   !SUBGROUPS 'hardware' recipe: K/V tiles of KT keys in workgroup memory, one query slot per lane;
//              each lane's KT scores sit in workgroup memory too (see `sc`).
//   KT       keys per shared tile (hardware recipe; sized by the wrapper to the workgroup storage limit)
//   SPLIT    split-K: workgroup x = tile + n_tiles*split covers keys [split*split_len, +split_len) and
//            writes a normalised partial (o, and (m, l) in log2 units) instead of out
//   COMBINE  second pass of split-K: merges the n_split partials of each slot into out
//
// Bindings (group 0):
//   0 params   uniform Params (below)
//   attention pass:       1 q, 2 k, 3 v  storage read array<vec4<f32>>
//                         4 out          storage rw   array<vec4<f32>>                 (!SPLIT)
//                         4 part_o       storage rw   array<vec4<f32>> [n_split, batch, groups, pad, D4]  (SPLIT)
//                         5 part_ml      storage rw   array<vec2<f32>> [n_split, batch, groups, pad]
//   COMBINE:              1 part_o, 2 part_ml (read), 3 out (rw)
//   (pad = n_tiles*SPW, n_tiles = ceil(lq*rep / SPW))
// Dispatch: attention pass (n_tiles*n_split, kv heads, batch), workgroup WG;
//           COMBINE (ceil(lq*rep*D4 / 64), kv heads, batch), workgroup 64.

struct Params {
  lq: u32, lk: u32, rep: u32, pos0: u32,
  causal: u32, split_len: u32, n_split: u32, scale: f32,  // scale includes log2(e): softmax runs in exp2
  q: vec4<u32>,  // (off, row, batch, group) strides in vec4 units
  k: vec4<u32>,
  v: vec4<u32>,
  o: vec4<u32>,
}

const D4: u32 = {{D4}}u;
const WG: u32 = {{WG}}u;
const QPL: u32 = {{QPL}}u;
const SPW: u32 = WG * QPL;  // query slots per workgroup
// Finite "minus infinity" (fast-math builds may not honour inf); masked keys also get p = 0 explicitly.
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> P: Params;

fn out_index(b: u32, g: u32, slot: u32) -> u32 {
  return P.o.x + b * P.o.z + (slot / P.rep) * P.o.y + g * P.o.w + (slot % P.rep) * D4;
}

#if COMBINE
@group(0) @binding(1) var<storage, read> part_o: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let slots = P.lq * P.rep;
  if (gid.x >= slots * D4) { return; }
  let slot = gid.x / D4;
  let c = gid.x % D4;
  let g = gid.y;
  let b = gid.z;
  let pad = (slots + SPW - 1u) / SPW * SPW;
  var m = NEG;
  for (var s = 0u; s < P.n_split; s++) {
    m = max(m, part_ml[((s * nwg.z + b) * nwg.y + g) * pad + slot].x);
  }
  var l = 0.0;
  var o = vec4<f32>(0.0);
  for (var s = 0u; s < P.n_split; s++) {
    let pi = ((s * nwg.z + b) * nwg.y + g) * pad + slot;
    let ml = part_ml[pi];
    let w = ml.y * exp2(ml.x - m);
    l += w;
    o += w * part_o[pi * D4 + c];
  }
  out[out_index(b, g, slot) + c] = select(vec4<f32>(0.0), o / l, l > 0.0);
}
#else
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
#if SPLIT
@group(0) @binding(4) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
#endif
#if !SUBGROUPS
const KT: u32 = {{KT}}u;
var<workgroup> ks: array<vec4<f32>, KT * D4>;
var<workgroup> vs: array<vec4<f32>, KT * D4>;
// each lane's scores of the tile: in workgroup memory, because a private array indexed by the key
// loop becomes a select ladder per access in lavapipe's compiler (minutes to compile at d >= 64)
var<workgroup> sc: array<array<f32, WG>, KT>;
#endif

fn hmax(a: vec4<f32>) -> f32 { return max(max(a.x, a.y), max(a.z, a.w)); }
fn hsum(a: vec4<f32>) -> f32 { return a.x + a.y + a.z + a.w; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32
#if SUBGROUPS
        , @builtin(subgroup_invocation_id) lane: u32
#endif
) {
  let slots = P.lq * P.rep;
  let n_tiles = (slots + SPW - 1u) / SPW;
  let tile = wid.x % n_tiles;
  let split = wid.x / n_tiles;
  let g = wid.y;
  let b = wid.z;

  // Keys this workgroup visits (uniform): its split's range, cut after the tile's last query when causal.
  let k_start = split * P.split_len;
  var k_end = min(P.lk, k_start + P.split_len);
  if (P.causal != 0u) {
    k_end = min(k_end, P.pos0 + min(slots - 1u, tile * SPW + SPW - 1u) / P.rep + 1u);
  }
  let kb = P.k.x + b * P.k.z + g * P.k.w;
  let vb = P.v.x + b * P.v.z + g * P.v.w;

  // This lane's QPL query slots: tile*SPW + qi*WG + lid. Slots past the end run along on a clamped
  // slot (subgroup ops and barriers need every lane) and write nothing.
  var qv: array<vec4<f32>, QPL * D4>;
  var acc: array<vec4<f32>, QPL * D4>;
  var last: array<u32, QPL>;  // last key position each query sees
  var m: array<f32, QPL>;
  var l: array<f32, QPL>;
  for (var qi = 0u; qi < QPL; qi++) {
    let slot = min(tile * SPW + qi * WG + lid, slots - 1u);
    let t = slot / P.rep;
    last[qi] = select(0xffffffffu, P.pos0 + t, P.causal != 0u);
    let qb = P.q.x + b * P.q.z + t * P.q.y + g * P.q.w + (slot % P.rep) * D4;
    for (var c = 0u; c < D4; c++) {
      qv[qi * D4 + c] = q[qb + c] * P.scale;
      acc[qi * D4 + c] = vec4<f32>(0.0);
    }
    m[qi] = NEG;
    l[qi] = 0.0;
  }

#if SUBGROUPS
  let sub = lane % 8u;
  for (var j0 = k_start; j0 < k_end; j0 += 8u) {
    let j = min(j0 + sub, k_end - 1u);
    // scores of keys j0..j0+3 (s[2qi]) and j0+4..j0+7 (s[2qi+1])
    // explicit zero: a bare `var s: array<...>;` here was not re-zeroed per iteration on lavapipe
    var s = array<vec4<f32>, 2u * QPL>();
    let kr = kb + j * P.k.y;
    for (var c = 0u; c < D4; c++) {
      let kv = k[kr + c];
      let k0 = subgroupBroadcast(kv, 0u); let k1 = subgroupBroadcast(kv, 1u);
      let k2 = subgroupBroadcast(kv, 2u); let k3 = subgroupBroadcast(kv, 3u);
      let k4 = subgroupBroadcast(kv, 4u); let k5 = subgroupBroadcast(kv, 5u);
      let k6 = subgroupBroadcast(kv, 6u); let k7 = subgroupBroadcast(kv, 7u);
      for (var qi = 0u; qi < QPL; qi++) {
        let qc = qv[qi * D4 + c];
        s[2u * qi] += vec4<f32>(dot(qc, k0), dot(qc, k1), dot(qc, k2), dot(qc, k3));
        s[2u * qi + 1u] += vec4<f32>(dot(qc, k4), dot(qc, k5), dot(qc, k6), dot(qc, k7));
      }
    }
    let jl = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jh = jl + vec4<u32>(4u);
    var p: array<vec4<f32>, 2u * QPL>;
    var alpha: array<f32, QPL>;
    for (var qi = 0u; qi < QPL; qi++) {
      let ok_l = (jl < vec4<u32>(k_end)) & (jl <= vec4<u32>(last[qi]));
      let ok_h = (jh < vec4<u32>(k_end)) & (jh <= vec4<u32>(last[qi]));
      let s_l = select(vec4<f32>(NEG), s[2u * qi], ok_l);
      let s_h = select(vec4<f32>(NEG), s[2u * qi + 1u], ok_h);
      let m_new = max(m[qi], max(hmax(s_l), hmax(s_h)));
      alpha[qi] = exp2(m[qi] - m_new);
      p[2u * qi] = select(vec4<f32>(0.0), exp2(s_l - m_new), ok_l);
      p[2u * qi + 1u] = select(vec4<f32>(0.0), exp2(s_h - m_new), ok_h);
      l[qi] = l[qi] * alpha[qi] + hsum(p[2u * qi] + p[2u * qi + 1u]);
      m[qi] = m_new;
    }
    let vr = vb + j * P.v.y;
    for (var c = 0u; c < D4; c++) {
      let vv = v[vr + c];
      let v0 = subgroupBroadcast(vv, 0u); let v1 = subgroupBroadcast(vv, 1u);
      let v2 = subgroupBroadcast(vv, 2u); let v3 = subgroupBroadcast(vv, 3u);
      let v4 = subgroupBroadcast(vv, 4u); let v5 = subgroupBroadcast(vv, 5u);
      let v6 = subgroupBroadcast(vv, 6u); let v7 = subgroupBroadcast(vv, 7u);
      for (var qi = 0u; qi < QPL; qi++) {
        let pl = p[2u * qi];
        let ph = p[2u * qi + 1u];
        acc[qi * D4 + c] = acc[qi * D4 + c] * alpha[qi]
          + pl.x * v0 + pl.y * v1 + pl.z * v2 + pl.w * v3
          + ph.x * v4 + ph.y * v5 + ph.z * v6 + ph.w * v7;
      }
    }
  }
#else
  // QPL is 1 here: one query slot per lane.
  for (var j0 = k_start; j0 < k_end; j0 += KT) {
    workgroupBarrier();  // the previous tile is consumed
    for (var i = lid; i < KT * D4; i += WG) {
      let j = min(j0 + i / D4, k_end - 1u);
      ks[i] = k[kb + j * P.k.y + i % D4];
      vs[i] = v[vb + j * P.v.y + i % D4];
    }
    workgroupBarrier();
    var m_new = m[0];
    for (var kk = 0u; kk < KT; kk++) {
      var a = vec4<f32>(0.0);
      for (var c = 0u; c < D4; c++) { a += qv[c] * ks[kk * D4 + c]; }
      let j = j0 + kk;
      sc[kk][lid] = select(NEG, hsum(a), j < k_end && j <= last[0]);
      m_new = max(m_new, sc[kk][lid]);
    }
    let alpha = exp2(m[0] - m_new);
    l[0] *= alpha;
    for (var c = 0u; c < D4; c++) { acc[c] *= alpha; }
    for (var kk = 0u; kk < KT; kk++) {
      let j = j0 + kk;
      let p = select(0.0, exp2(sc[kk][lid] - m_new), j < k_end && j <= last[0]);
      l[0] += p;
      for (var c = 0u; c < D4; c++) { acc[c] += p * vs[kk * D4 + c]; }
    }
    m[0] = m_new;
  }
#endif

  for (var qi = 0u; qi < QPL; qi++) {
    let slot = tile * SPW + qi * WG + lid;
    let inv = select(0.0, 1.0 / l[qi], l[qi] > 0.0);
    if (slot < slots) {
#if SPLIT
      let pi = ((split * nwg.z + b) * nwg.y + g) * (n_tiles * SPW) + slot;
      part_ml[pi] = vec2<f32>(m[qi], l[qi]);
      for (var c = 0u; c < D4; c++) { part_o[pi * D4 + c] = acc[qi * D4 + c] * inv; }
#else
      let ob = out_index(b, g, slot);
      for (var c = 0u; c < D4; c++) { out[ob + c] = acc[qi * D4 + c] * inv; }
#endif
    }
  }
}
#endif
