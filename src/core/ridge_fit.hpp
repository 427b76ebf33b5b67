#pragma once
// The ridge fit of Eq. 4: (M^T M + lambda I) X = M^T vec(S), for many maps at once.
// M^T M depends only on the basis (n, frame ranges) and lambda, so it is factored
// once and cached process-wide. Its diagonal-diagonal block D is itself diagonal
// (n - |delta| + lambda), so we eliminate it and factor only the Schur complement
// of the columns and frames, S = R - B D^-1 B^T ((n+F) x (n+F), Cholesky). Per map
// the work is the O(n^2) sums of basis_project, O(n + sum_f L_f) window sums for
// B and B^T, and two (n+F)-sized triangular solves: about 9x fewer flops than a
// Cholesky of the full (3n-1+F) system.
// lambda = 0 (M^T M is always singular: a constant moves freely between diagonals
// and columns) uses the pseudo-inverse of the full system, the minimum-norm
// solution; it is slow and meant for references.
//
// Reuse from CUDA (same parameter order as pattern_basis.hpp), per head:
//   b   = M^T vec(S)                      (diagonal, column, frame-square sums)
//   b_r -= B (dinv .* b_d)                (apply_b: window sums)
//   x_r = S^-1 b_r                        (lower(): L L^T = S; trsm with all heads as RHS)
//   x_d = dinv .* (b_d - B^T x_r)         (apply_bt: window sums)
// with dinv() = D^-1 and b_d / x_d the first num_diagonals() entries.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/pattern_basis.hpp"

namespace moddit {
namespace core {

class RidgeFactor {
 public:
  RidgeFactor(const PatternBasis& basis, double lambda);
  const PatternBasis& basis() const { return basis_; }
  double lambda() const { return lambda_; }
  bool is_cholesky() const { return pinv_.empty(); }
  int num_diagonals() const { return 2 * basis_.n - 1; }
  // Size of the Schur complement: n + F (the columns and frames).
  int schur_size() const { return basis_.num_params() - num_diagonals(); }
  // L with L L^T = S, column-major schur_size()^2 doubles (upper part zero;
  // lambda > 0 only, empty otherwise). No Eigen types here, so that nvcc and
  // translation units built with other -march flags can include this header.
  const std::vector<double>& lower() const { return lower_; }
  // S^-1 = L^-T L^-1, schur_size()^2 doubles (symmetric; lambda > 0 only). The
  // GPU fit multiplies by it: one parallel product per head instead of two
  // sequential triangular sweeps. cond(S) is about 1e6 at lambda = 1e-3, so the
  // explicit inverse costs ~1e-10 relative in double.
  std::vector<double> schur_inverse() const;
  // D^-1: 1 / (n - |delta| + lambda) per diagonal (lambda > 0 only).
  const std::vector<double>& dinv() const { return dinv_; }
  // out[0..n+F) = B y for y[0..2n-1): column j sums y over the diagonals it meets,
  // frame f sums (L_f - |delta|) y_delta for |delta| < L_f.
  void apply_b(const double* y, double* out) const;
  // out[0..2n-1) = B^T z for z[0..n+F).
  void apply_bt(const double* z, double* out) const;
  // Solves in place: rhs is p x k column-major (column c = M^T vec(S) of map c) -> X.
  void solve(double* rhs, int k) const;

 private:
  PatternBasis basis_;
  double lambda_;
  std::vector<double> dinv_;
  std::vector<double> lower_;  // column-major
  std::vector<double> pinv_;   // lambda == 0: pinv(M^T M), column-major p x p
};

// The cached factor for (basis, lambda); thread-safe; lambda must be >= 0.
std::shared_ptr<const RidgeFactor> ridge_factor(const PatternBasis& basis, double lambda);
// Number of factorizations done so far (the cache's misses): tests check reuse.
int64_t ridge_factorizations();

// Fits `count` row-major n x n maps (maps[c * n * n ...]), spread over threads
// (core/parallel.hpp). x_out: count x p
// (row-major, parameter order of pattern_basis.hpp); nae_out: count values
// ||S - M X|| / ||S|| (0 when S = 0); fitted_out (optional): count x n x n maps M X.
void fit_maps(const RidgeFactor& factor, const float* maps, int count, double* x_out,
              double* nae_out, double* fitted_out = nullptr);

}  // namespace core
}  // namespace moddit
