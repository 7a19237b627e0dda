// Decoding of q8 / q4 weight words (#include quant; layout in src/weights/quantize.ts and
// docs/quantization.md). A row of K values: its codes, then ceil(K / 256) 16-byte units of f16 group
// scales (8 per unit); groups are 32 values along K; value = scale * q.
//   Q4: the 16-byte unit g holds group g; its word j holds values 8j .. 8j+7 of the group as 4-bit
//       two's complement nibbles, byte b = (q[8j+b] & 15) | (q[8j+b+4] & 15) << 4: the low nibbles
//       are values 0..3, the high ones 4..7. A shift left and an arithmetic shift right decode one
//       (no mask, no offset to subtract: a quarter fewer operations per value than offset codes).
//   Q8: byte k of the row is q[k] as int8; a 16-byte unit holds 16 values, half a group.
// Defines: Q4 or Q8; K_VALUES: an expression for K (the kernel's own uniform).

#if Q4
const CODE_UNITS_PER_GROUP = 1u;
#else
const CODE_UNITS_PER_GROUP = 2u;
#endif

// 16-byte units of codes in a row, and of the whole row (codes then scales).
fn codeUnits() -> u32 { return ({{K_VALUES}}) / 32u * CODE_UNITS_PER_GROUP; }
fn rowUnits() -> u32 { return codeUnits() + (({{K_VALUES}}) + 255u) / 256u; }

// Position (unit, word) of the scale of group g, and the scale from that word.
fn scaleUnit(g: u32) -> u32 { return codeUnits() + g / 8u; }
fn scaleWord(g: u32) -> u32 { return (g % 8u) / 2u; }
fn scaleOf(word: u32, g: u32) -> f32 { return unpack2x16float(word)[g % 2u]; }

#if Q4
// The 8 values of a code word (unscaled), in order.
fn codes8(v: u32) -> array<vec4<f32>, 2> {
  let lo = bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(28u, 20u, 12u, 4u)) >> vec4<u32>(28u);
  let hi = bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(28u);
  return array<vec4<f32>, 2>(vec4<f32>(lo), vec4<f32>(hi));
}
// Value i (0..7) of a code word, unscaled.
fn code1(v: u32, i: u32) -> f32 { return f32(bitcast<i32>(v << (28u - 8u * (i % 4u) - 4u * (i / 4u))) >> 28u); }
#else
// The 4 values of a code word (unscaled), in order: sign-extended bytes.
fn codes4(v: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}
fn code1(v: u32, i: u32) -> f32 { return f32(bitcast<i32>(v << (24u - 8u * i)) >> 24u); }
#endif
