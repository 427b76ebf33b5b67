// The pattern basis and the ridge fit (DESIGN.md 2, Eq. 3-4) against an explicit
// design matrix and a dense SVD / complete-orthogonal-decomposition reference.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <random>
#include <thread>

#include "core/pattern_basis.hpp"
#include "core/ridge_fit.hpp"
#include "moddit/error.hpp"
#include "moddit/token_layout.hpp"

using namespace moddit;
using namespace moddit::core;

namespace {

struct Case {
  const char* name;
  int64_t frames, P, text;
  TextPosition pos;
  int expect_n;
};

// Block size 64 throughout: n = 5, 12, 24 with aligned, unaligned and tiny frames,
// text before (partial text block) and after.
const Case kCases[] = {
    {"n5_aligned", 5, 64, 0, TextPosition::None, 5},
    {"n5_unaligned_text_before", 3, 100, 100, TextPosition::Before, 5},
    {"n5_tiny_frames", 10, 30, 0, TextPosition::None, 5},
    {"n12_aligned_text_after", 4, 192, 77, TextPosition::After, 12},
    {"n12_unaligned", 8, 95, 0, TextPosition::None, 12},
    {"n24_aligned_text_before", 6, 256, 130, TextPosition::Before, 24},
    {"n24_unaligned_text_after", 13, 117, 50, TextPosition::After, 24},
};

PatternBasis basis_of(const Case& c) {
  TokenLayout t;
  t.frames = c.frames;
  t.height = c.P;
  t.width = 1;
  t.text_tokens = c.text;
  t.text_valid = c.text;
  t.text_position = c.pos;
  const BlockGrid g = make_block_grid(t, 64);
  EXPECT_EQ(g.num_video_blocks, c.expect_n) << c.name;
  return make_pattern_basis(g, t);
}

Eigen::MatrixXd explicit_M(const PatternBasis& b) {
  const std::vector<double> m = basis_matrix(b);
  const int rows = b.n * b.n, p = b.num_params();
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      m.data(), rows, p);
}

std::vector<float> random_maps(int n, int count, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  std::vector<float> s(static_cast<size_t>(n) * n * count);
  for (auto& x : s) x = u(rng);
  return s;
}

// The ridge solution from the augmented least squares [M; sqrt(lambda) I] X = [S; 0].
Eigen::VectorXd reference_fit(const Eigen::MatrixXd& M, const float* S, double lambda) {
  const int rows = static_cast<int>(M.rows()), p = static_cast<int>(M.cols());
  Eigen::MatrixXd A(rows + p, p);
  A << M, std::sqrt(lambda) * Eigen::MatrixXd::Identity(p, p);
  Eigen::VectorXd rhs = Eigen::VectorXd::Zero(rows + p);
  for (int k = 0; k < rows; ++k) rhs[k] = S[k];
  return A.bdcSvd(Eigen::ComputeThinU | Eigen::ComputeThinV).solve(rhs);
}

}  // namespace

TEST(PatternBasis, FramesIntersectingBlocksOverlapAndAreNotFloored) {
  // 3 frames x 100 tokens, blocks of 64: [0,64) [64,128) [128,192) [192,256) [256,300)
  const PatternBasis b = make_pattern_basis({0, 64, 128, 192, 256, 300}, 100, 3);
  ASSERT_EQ(b.num_frames(), 3);
  EXPECT_EQ(b.frame_lo, (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(b.frame_hi, (std::vector<int32_t>{1, 3, 4}));
  // Frame boundaries on block boundaries do not spill into the next block.
  const PatternBasis a = make_pattern_basis({0, 64, 128, 192, 256}, 128, 2);
  EXPECT_EQ(a.frame_lo, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(a.frame_hi, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(b.num_params(), 3 * 5 - 1 + 3);
}

TEST(PatternBasis, GramProjectAndReconstructMatchTheExplicitMatrix) {
  std::mt19937 rng(11);
  for (const Case& c : kCases) {
    const PatternBasis b = basis_of(c);
    const Eigen::MatrixXd M = explicit_M(b);
    const int p = b.num_params(), nn = b.n * b.n;
    const std::vector<double> g = basis_gram(b);
    const Eigen::MatrixXd G = Eigen::Map<const Eigen::MatrixXd>(g.data(), p, p);
    EXPECT_EQ((G - M.transpose() * M).cwiseAbs().maxCoeff(), 0.0) << c.name;

    const std::vector<float> S = random_maps(b.n, 1, rng);
    Eigen::VectorXd s(nn);
    for (int k = 0; k < nn; ++k) s[k] = S[k];
    Eigen::VectorXd proj(p);
    basis_project(b, S.data(), proj.data());
    const Eigen::VectorXd ref = M.transpose() * s;
    EXPECT_LT((proj - ref).norm(), 1e-12 * ref.norm()) << c.name;

    Eigen::VectorXd x = Eigen::VectorXd::Random(p);
    Eigen::VectorXd mx(nn);
    basis_reconstruct(b, x.data(), mx.data());
    EXPECT_LT((mx - M * x).norm(), 1e-12 * (M * x).norm()) << c.name;
  }
}

TEST(RidgeFit, MatchesDenseSvdReferenceOnRandomMaps) {
  std::mt19937 rng(12);
  for (double lambda : {1e-3, 1e-1}) {
    for (const Case& c : kCases) {
      const PatternBasis b = basis_of(c);
      const Eigen::MatrixXd M = explicit_M(b);
      const int p = b.num_params(), nn = b.n * b.n, count = 3;
      const std::vector<float> S = random_maps(b.n, count, rng);
      std::vector<double> x(static_cast<size_t>(count) * p), nae(count);
      fit_maps(*ridge_factor(b, lambda), S.data(), count, x.data(), nae.data());
      for (int h = 0; h < count; ++h) {
        const Eigen::VectorXd ref = reference_fit(M, S.data() + h * nn, lambda);
        const Eigen::Map<const Eigen::VectorXd> got(x.data() + h * p, p);
        EXPECT_LT((got - ref).norm(), 1e-6 * ref.norm()) << c.name << " lambda " << lambda;
        Eigen::VectorXd s(nn);
        for (int k = 0; k < nn; ++k) s[k] = S[h * nn + k];
        const double ref_nae = (s - M * ref).norm() / s.norm();
        EXPECT_NEAR(nae[h], ref_nae, 1e-6 * ref_nae) << c.name;
        EXPECT_GT(nae[h], 0.0);
      }
    }
  }
}

TEST(RidgeFit, ZeroLambdaGivesTheMinimumNormLeastSquaresSolution) {
  std::mt19937 rng(13);
  for (const Case& c : kCases) {
    const PatternBasis b = basis_of(c);
    const Eigen::MatrixXd M = explicit_M(b);
    const int p = b.num_params(), nn = b.n * b.n;
    const std::vector<float> S = random_maps(b.n, 1, rng);
    std::vector<double> x(p), nae(1);
    fit_maps(*ridge_factor(b, 0.0), S.data(), 1, x.data(), nae.data());
    Eigen::VectorXd s(nn);
    for (int k = 0; k < nn; ++k) s[k] = S[k];
    const Eigen::VectorXd ref = M.completeOrthogonalDecomposition().solve(s);
    const Eigen::Map<const Eigen::VectorXd> got(x.data(), p);
    EXPECT_LT((got - ref).norm(), 1e-6 * ref.norm()) << c.name;
  }
}

TEST(RidgeFit, RecoversAMapBuiltFromTheBases) {
  std::mt19937 rng(14);
  std::uniform_real_distribution<double> u(-0.3, 0.6);
  for (const Case& c : kCases) {
    const PatternBasis b = basis_of(c);
    const int p = b.num_params(), nn = b.n * b.n;
    std::vector<double> x0(p), m(nn);
    for (auto& v : x0) v = u(rng);
    basis_reconstruct(b, x0.data(), m.data());
    std::vector<float> S(m.begin(), m.end());
    // Re-measure against the float map so that float rounding of S is not an error.
    std::vector<double> x(p), nae(1);
    fit_maps(*ridge_factor(b, 1e-9), S.data(), 1, x.data(), nae.data());
    EXPECT_LT(nae[0], 1e-6) << c.name;
  }
}

TEST(RidgeFit, FactorIsCachedAndSharedAcrossThreads) {
  const PatternBasis b = basis_of(kCases[3]);
  const double lambda = 0.0123;  // a value no other test uses
  const int64_t before = ridge_factorizations();
  std::vector<std::shared_ptr<const RidgeFactor>> got(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { got[i] = ridge_factor(b, lambda); });
  for (auto& t : threads) t.join();
  const int64_t after = ridge_factorizations();
  EXPECT_GE(after - before, 1);
  EXPECT_LE(after - before, 4);
  const auto again = ridge_factor(b, lambda);
  EXPECT_EQ(ridge_factorizations(), after);  // a hit factors nothing
  for (auto& g : got) EXPECT_EQ(g->lower(), again->lower());
  ASSERT_EQ(again->schur_size(), b.n + b.num_frames());
  EXPECT_NE(ridge_factor(b, lambda * 2).get(), again.get());
  EXPECT_TRUE(again->is_cholesky());
  // L L^T is the Schur complement of the diagonals' block in M^T M + lambda I, and
  // apply_b / apply_bt are that block's off-diagonal coupling B.
  const int p = b.num_params(), nd = again->num_diagonals(), nr = p - nd;
  const std::vector<double> g = basis_gram(b);
  Eigen::MatrixXd G = Eigen::Map<const Eigen::MatrixXd>(g.data(), p, p);
  G.diagonal().array() += lambda;
  const Eigen::MatrixXd B = G.bottomLeftCorner(nr, nd);
  const Eigen::VectorXd dinv = G.diagonal().head(nd).cwiseInverse();
  const Eigen::Map<const Eigen::VectorXd> got_dinv(again->dinv().data(), nd);
  EXPECT_LT((got_dinv - dinv).norm(), 1e-15 * dinv.norm());
  const Eigen::MatrixXd S = G.bottomRightCorner(nr, nr) - B * dinv.asDiagonal() * B.transpose();
  const Eigen::Map<const Eigen::MatrixXd> L(again->lower().data(), nr, nr);
  EXPECT_LT((L * L.transpose() - S).norm(), 1e-12 * S.norm());
  const Eigen::VectorXd y = Eigen::VectorXd::Random(nd), z = Eigen::VectorXd::Random(nr);
  Eigen::VectorXd by(nr), btz(nd);
  again->apply_b(y.data(), by.data());
  again->apply_bt(z.data(), btz.data());
  EXPECT_LT((by - B * y).norm(), 1e-12 * (B * y).norm());
  EXPECT_LT((btz - B.transpose() * z).norm(), 1e-12 * (B.transpose() * z).norm());
  EXPECT_THROW(ridge_factor(b, -1.0), Error);
}
