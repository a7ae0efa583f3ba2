// Emulation of ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16.
//
// Lane 8i + j names row j of matrix i (8 x 16-bit elements, 16 bytes, 16-byte aligned); the
// last lane to arrive reads every named row and deals the elements out (layout in <ouro/ptx.h>).
// Each lane checks its own address before it arrives, so a misalignment report names the lane
// at fault rather than whichever lane happened to arrive last.
#include <ouro/ptx.h>
#include <ouro/simt/report.h>
#include <ouro/simt/warp.h>

#include <cstdio>
#include <cstring>

namespace ouro::ptx::emu {
namespace {

struct LdIn {
  const void* row;
};
struct LdOut {
  uint32_t r[4];
};

uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t{lo} | uint32_t{hi} << 16; }

const char* op_name(int n, bool trans) {
  static const char* const names[2][3] = {
      {"ldmatrix.x1", "ldmatrix.x2", "ldmatrix.x4"},
      {"ldmatrix.x1.trans", "ldmatrix.x2.trans", "ldmatrix.x4.trans"}};
  return names[trans][n == 1 ? 0 : n == 2 ? 1 : 2];
}

void ldmatrix_warp(int n, bool trans, const simt::Lanes<LdIn>& in, simt::Lanes<LdOut>& out) {
  uint16_t m[4][8][8];  // [matrix][row][col]
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 8; ++j) std::memcpy(m[i][j], in[8 * i + j].row, 16);
  for (unsigned lane = 0; lane < simt::kWarpSize; ++lane) {
    const unsigned r = lane / 4, c = 2 * (lane % 4);
    for (int i = 0; i < n; ++i)
      out[lane].r[i] = trans ? pack(m[i][c][r], m[i][c + 1][r]) : pack(m[i][r][c], m[i][r][c + 1]);
  }
}

}  // namespace

void ldmatrix(int n, bool trans, uint32_t* r, const void* smem_row, std::source_location where) {
  const unsigned lane = simt::lane_id();
  if (lane < 8u * n && smem_row == nullptr) {
    char msg[96];
    std::snprintf(msg, sizeof msg, "%s: lane %u gives a null row address", op_name(n, trans), lane);
    simt::report(simt::BugKind::invalid_argument, msg, where);
  }
  if (lane < 8u * n && reinterpret_cast<uintptr_t>(smem_row) % 16 != 0) {
    char msg[160];
    std::snprintf(msg, sizeof msg,
                  "%s: lane %u gives row address %p, which is not 16-byte aligned",
                  op_name(n, trans), lane, smem_row);
    simt::report(simt::BugKind::misaligned_address, msg, where);
  }
  const LdOut out = simt::warp_collective<LdOut>(
      simt::kFullMask, LdIn{smem_row},
      [n, trans](const simt::Lanes<LdIn>& lanes, simt::Lanes<LdOut>& res, unsigned) {
        ldmatrix_warp(n, trans, lanes, res);
      },
      op_name(n, trans), where);
  std::memcpy(r, out.r, sizeof(uint32_t) * n);
}

}  // namespace ouro::ptx::emu
