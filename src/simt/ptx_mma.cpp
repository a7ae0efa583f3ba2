// Emulation of mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32.
//
// Every lane hands in its fragments; the last lane to arrive rebuilds A (16x16), B (16x8) and
// C (16x8) from the fragment layouts (see <ouro/ptx.h>), multiplies, and hands each lane its
// part of D. Numerics, as documented in <ouro/ptx.h>: exact products, fp32 accumulation in k
// order starting from c, one rounding per step (fmaf).
#include <ouro/ptx.h>
#include <ouro/simt/warp.h>

#include <bit>
#include <cmath>
#include <cstring>

namespace ouro::ptx::emu {
namespace {

float bf16_to_float(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

// IEEE binary16 -> binary32; exact for every input (subnormals included), NaN payload kept.
float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | man << 13);
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float mag = std::ldexp(static_cast<float>(man), -24);
    return sign ? -mag : mag;
  }
  return std::bit_cast<float>(sign | (exp + 127 - 15) << 23 | man << 13);
}

// Element e (0 = low half) of 32-bit register `reg`.
uint16_t half_of(uint32_t reg, int e) { return static_cast<uint16_t>(reg >> (16 * e)); }

struct MmaIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};
struct MmaOut {
  float d[4];
};

void mma_warp(Elem elem, const simt::Lanes<MmaIn>& in, simt::Lanes<MmaOut>& out) {
  const auto to_float = elem == Elem::bf16 ? bf16_to_float : f16_to_float;
  float A[16][16], B[16][8], C[16][8];
  for (unsigned lane = 0; lane < simt::kWarpSize; ++lane) {
    const unsigned g = lane / 4, t = lane % 4;
    for (int i = 0; i < 8; ++i) {  // a_i: register i/2, half i%2
      const unsigned row = g + 8 * ((i >> 1) & 1), col = 2 * t + (i & 1) + 8 * (i >= 4);
      A[row][col] = to_float(half_of(in[lane].a[i / 2], i % 2));
    }
    for (int i = 0; i < 4; ++i) {  // b_i: register i/2, half i%2
      const unsigned k = 2 * t + (i & 1) + 8 * (i >= 2);
      B[k][g] = to_float(half_of(in[lane].b[i / 2], i % 2));
    }
    for (int i = 0; i < 4; ++i) C[g + 8 * (i >= 2)][2 * t + (i & 1)] = in[lane].c[i];
  }
  for (unsigned lane = 0; lane < simt::kWarpSize; ++lane) {
    const unsigned g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const unsigned row = g + 8 * (i >= 2), col = 2 * t + (i & 1);
      float acc = C[row][col];
      for (int k = 0; k < 16; ++k) acc = std::fmaf(A[row][k], B[k][col], acc);
      out[lane].d[i] = acc;
    }
  }
}

}  // namespace

void mma_16816(Elem elem, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
               const float (&c)[4], std::source_location where) {
  MmaIn in;
  std::memcpy(in.a, a, sizeof in.a);
  std::memcpy(in.b, b, sizeof in.b);
  std::memcpy(in.c, c, sizeof in.c);
  // .aligned: every lane of the warp executes the same mma; the rendezvous reports absent lanes.
  const MmaOut out = simt::warp_collective<MmaOut>(
      simt::kFullMask, in,
      [elem](const simt::Lanes<MmaIn>& lanes, simt::Lanes<MmaOut>& res, unsigned) {
        mma_warp(elem, lanes, res);
      },
      elem == Elem::bf16 ? "mma.m16n8k16.bf16" : "mma.m16n8k16.f16", where);
  std::memcpy(d, out.d, sizeof out.d);
}

}  // namespace ouro::ptx::emu
