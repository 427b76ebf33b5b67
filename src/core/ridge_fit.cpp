#include "core/ridge_fit.hpp"
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <utility>

#include "core/parallel.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace core {

namespace {
std::atomic<int64_t> g_factorizations{0};
}

RidgeFactor::RidgeFactor(const PatternBasis& basis, double lambda)
    : basis_(basis), lambda_(lambda) {
  MODDIT_CHECK(lambda >= 0.0 && std::isfinite(lambda), "ridge_lambda must be >= 0, got ", lambda);
  const int p = basis.num_params(), nd = num_diagonals(), nr = p - nd;
  const std::vector<double> g = basis_gram(basis);
  Eigen::MatrixXd G = Eigen::Map<const Eigen::MatrixXd>(g.data(), p, p);  // symmetric
  if (lambda > 0.0) {
    G.diagonal().array() += lambda;
    // G = [D B^T; B R] with D diagonal: factor the Schur complement S = R - B D^-1 B^T.
    const Eigen::VectorXd dinv = G.diagonal().head(nd).cwiseInverse();
    dinv_.assign(dinv.data(), dinv.data() + nd);
    const Eigen::MatrixXd B = G.bottomLeftCorner(nr, nd);
    const Eigen::MatrixXd S =
        G.bottomRightCorner(nr, nr) - B * dinv.asDiagonal() * B.transpose();
    Eigen::LLT<Eigen::MatrixXd> llt(S);
    MODDIT_CHECK(llt.info() == Eigen::Success, "ridge fit: M^T M + lambda I (lambda = ", lambda,
                 ") is not numerically positive definite; use a larger ridge_lambda");
    const Eigen::MatrixXd L = llt.matrixL();
    lower_.assign(L.data(), L.data() + L.size());
  } else {
    // Minimum-norm least squares: pinv(M^T M) M^T = pinv(M).
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(G);
    const Eigen::VectorXd& ev = es.eigenvalues();
    double top = 0.0;
    for (int i = 0; i < p; ++i) top = std::max(top, std::abs(ev[i]));
    const double tol = top * p * 1e-12;
    Eigen::VectorXd inv(p);
    for (int i = 0; i < p; ++i) inv[i] = ev[i] > tol ? 1.0 / ev[i] : 0.0;
    const Eigen::MatrixXd P = es.eigenvectors() * inv.asDiagonal() * es.eigenvectors().transpose();
    pinv_.assign(P.data(), P.data() + P.size());
  }
  ++g_factorizations;
}

std::vector<double> RidgeFactor::schur_inverse() const {
  MODDIT_CHECK(is_cholesky(), "ridge fit: schur_inverse needs ridge_lambda > 0");
  const int nr = schur_size();
  const Eigen::Map<const Eigen::MatrixXd> L(lower_.data(), nr, nr);
  const Eigen::MatrixXd Linv =
      L.triangularView<Eigen::Lower>().solve(Eigen::MatrixXd::Identity(nr, nr));
  const Eigen::MatrixXd Sinv = Linv.transpose() * Linv;
  return std::vector<double>(Sinv.data(), Sinv.data() + Sinv.size());
}

void RidgeFactor::apply_b(const double* y, double* out) const {
  const int n = basis_.n;
  // Column j meets the diagonals k = delta + n - 1 in [j, j + n - 1]: a window sum.
  std::vector<double> pre(static_cast<size_t>(2 * n), 0.0);
  for (int k = 0; k < 2 * n - 1; ++k) pre[k + 1] = pre[k] + y[k];
  for (int j = 0; j < n; ++j) out[j] = pre[j + n] - pre[j];
  for (int f = 0; f < basis_.num_frames(); ++f) {
    const int L = basis_.frame_hi[f] - basis_.frame_lo[f] + 1;
    double acc = 0.0;
    for (int d = -(L - 1); d <= L - 1; ++d) acc += (L - std::abs(d)) * y[d + n - 1];
    out[n + f] = acc;
  }
}

void RidgeFactor::apply_bt(const double* z, double* out) const {
  const int n = basis_.n;
  // Diagonal delta meets the columns j in [max(0, delta), min(n-1, n-1+delta)].
  std::vector<double> pre(static_cast<size_t>(n) + 1, 0.0);
  for (int j = 0; j < n; ++j) pre[j + 1] = pre[j] + z[j];
  for (int d = -(n - 1); d <= n - 1; ++d)
    out[d + n - 1] = pre[std::min(n - 1, n - 1 + d) + 1] - pre[std::max(0, d)];
  for (int f = 0; f < basis_.num_frames(); ++f) {
    const int L = basis_.frame_hi[f] - basis_.frame_lo[f] + 1;
    for (int d = -(L - 1); d <= L - 1; ++d) out[d + n - 1] += (L - std::abs(d)) * z[n + f];
  }
}

void RidgeFactor::solve(double* rhs_data, int k) const {
  const int p = basis_.num_params();
  Eigen::Map<Eigen::MatrixXd> rhs(rhs_data, p, k);
  if (!is_cholesky()) {
    rhs = (Eigen::Map<const Eigen::MatrixXd>(pinv_.data(), p, p) * rhs).eval();
    return;
  }
  const int nd = num_diagonals(), nr = schur_size();
  const Eigen::Map<const Eigen::MatrixXd> L(lower_.data(), nr, nr);
  std::vector<double> y(static_cast<size_t>(nd)), tmp(static_cast<size_t>(std::max(nd, nr)));
  // [D B^T; B R] [x_d; x_r] = [b_d; b_r]:  S x_r = b_r - B D^-1 b_d,
  // x_d = D^-1 (b_d - B^T x_r).
  for (int c = 0; c < k; ++c) {
    double* col = rhs_data + static_cast<size_t>(c) * p;
    for (int r = 0; r < nd; ++r) y[r] = dinv_[r] * col[r];
    apply_b(y.data(), tmp.data());
    for (int r = 0; r < nr; ++r) col[nd + r] -= tmp[r];
  }
  auto xr = rhs.bottomRows(nr);
  L.triangularView<Eigen::Lower>().solveInPlace(xr);
  L.transpose().triangularView<Eigen::Upper>().solveInPlace(xr);
  for (int c = 0; c < k; ++c) {
    double* col = rhs_data + static_cast<size_t>(c) * p;
    apply_bt(col + nd, tmp.data());
    for (int r = 0; r < nd; ++r) col[r] = dinv_[r] * (col[r] - tmp[r]);
  }
}

std::shared_ptr<const RidgeFactor> ridge_factor(const PatternBasis& basis, double lambda) {
  static std::mutex mu;
  static std::map<std::pair<PatternBasis, double>, std::shared_ptr<const RidgeFactor>> cache;
  auto key = std::make_pair(basis, lambda);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Factor outside the lock (large n takes a while); a racing thread may factor the
  // same key, and the first insert wins.
  auto f = std::make_shared<const RidgeFactor>(basis, lambda);
  std::lock_guard<std::mutex> lock(mu);
  // Sessions use one or two grids; keep the cache from growing without bound.
  if (cache.size() >= 32) cache.clear();
  return cache.emplace(std::move(key), std::move(f)).first->second;
}

int64_t ridge_factorizations() { return g_factorizations.load(); }

void fit_maps(const RidgeFactor& factor, const float* maps, int count, double* x_out,
              double* nae_out, double* fitted_out) {
  const PatternBasis& b = factor.basis();
  const int n = b.n, p = b.num_params();
  const size_t nn = static_cast<size_t>(n) * n;
  Eigen::MatrixXd rhs(p, count);
  // Per map: O(n^2) sums, the two triangular solves (chunks of right-hand sides),
  // then M X and the residual for the NAE.
  parallel_for(count, 1, [&](int begin, int end) {
    for (int c = begin; c < end; ++c) basis_project(b, maps + c * nn, rhs.col(c).data());
    factor.solve(rhs.col(begin).data(), end - begin);
    std::vector<double> row(static_cast<size_t>(n));
    for (int c = begin; c < end; ++c) {
      const double* x = rhs.col(c).data();
      std::copy(x, x + p, x_out + static_cast<size_t>(c) * p);
      if (fitted_out) basis_reconstruct(b, x, fitted_out + c * nn);
      // The residual row by row (M X never materialised): diagonal slice + columns,
      // plus the frames whose square covers the row.
      const float* S = maps + c * nn;
      const double* col = x + b.column_index(0);
      double num = 0.0, den = 0.0;
      int f_first = 0;
      for (int i = 0; i < n; ++i) {
        const double* diag = x + (n - 1 - i);  // diag[j] = coefficient of delta = j - i
        for (int j = 0; j < n; ++j) row[j] = diag[j] + col[j];
        while (f_first < b.num_frames() && b.frame_hi[f_first] < i) ++f_first;
        for (int f = f_first; f < b.num_frames() && b.frame_lo[f] <= i; ++f) {
          if (b.frame_hi[f] < i) continue;
          const double e = x[b.frame_index(f)];
          for (int j = b.frame_lo[f]; j <= b.frame_hi[f]; ++j) row[j] += e;
        }
        const float* srow = S + static_cast<size_t>(i) * n;
        for (int j = 0; j < n; ++j) {
          const double s = srow[j], r = s - row[j];
          num += r * r;
          den += s * s;
        }
      }
      nae_out[c] = den > 0.0 ? std::sqrt(num / den) : 0.0;
    }
  });
}

}  // namespace core
}  // namespace moddit
