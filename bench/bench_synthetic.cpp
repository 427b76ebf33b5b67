// Times the synthetic trajectory generator on the default spec (what `moddit demo`
// and the default eval generate: 6 x 16x16 tokens, 8 heads, D 64, 2 layers, 50
// steps), every (step, layer) once, and prints wall and process CPU seconds (on a
// shared, loaded machine the wall time inflates while CPU time stays close to the
// quiet-machine cost). Checks what it generated: every tensor [1, N, 8, 64] and
// finite, and a second generation of the last (step, layer) the same bytes;
// exits 1 otherwise.
//
//   bench_synthetic
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "moddit/host_tensor.hpp"
#include "moddit/trajectory.hpp"

using namespace moddit;

int main() {
  const SyntheticSpec spec;
  auto src = make_synthetic(spec);
  const int64_t N = src->info().tokens.total_tokens();
  HostTensor q, k, v;
  bool ok = true;
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  for (int s = 0; s < spec.num_steps; ++s)
    for (int l = 0; l < spec.layers; ++l) {
      src->load(s, l, q, k, v);
      for (const HostTensor* t : {&q, &k, &v}) {
        ok = ok && t->shape[0] == 1 && t->shape[1] == N && t->shape[2] == spec.heads &&
             t->shape[3] == spec.head_dim;
        const HostTensor f = t->to(DType::F32);
        for (int64_t i = 0; ok && i < f.numel(); ++i) ok = std::isfinite(f.f32()[i]);
      }
    }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
  HostTensor q2, k2, v2;
  make_synthetic(spec)->load(spec.num_steps - 1, spec.layers - 1, q2, k2, v2);
  ok = ok && q2.bytes == q.bytes && k2.bytes == k.bytes && v2.bytes == v.bytes;
  std::printf("synthetic default spec (%s): %d steps x %d layers in %.2f s wall, %.2f s CPU\n",
              spec.describe().c_str(), spec.num_steps, spec.layers, wall, cpu);
  if (!ok) {
    std::printf("bench_synthetic: FAILED: a tensor had the wrong shape, a non-finite value or "
                "was not reproduced by a second generation\n");
    return 1;
  }
  return 0;
}
