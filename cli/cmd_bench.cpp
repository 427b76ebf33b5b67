// `moddit bench`: effective TFLOP/s of the CUDA dense and block-sparse attention
// (4 * B * H * D * sum of live query x key pairs / t) at video-DiT shapes and
// densities, on random and MOD-DiT-shaped layouts, with and without the exact
// sparsity map. Every timed call's output is checked against the CPU reference on
// sampled rows (eval/output_check.hpp); a mismatch fails the run before anything
// is written. scripts/bench_gpu.py puts the same kernels beside PyTorch's SDPA
// (cuDNN, flash) and FlexAttention in one process; docs/BENCHMARKS.md has results.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_overhead.hpp"
#include "commands.hpp"
#include "eval/output_check.hpp"
#include "io/atomic_file.hpp"
#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"
#include "moddit/token_layout.hpp"

namespace moddit::cli {
namespace {

struct Shape {
  std::string name;
  int heads, dim;
  TokenLayout tokens;  // video only, so that block grids match FlexAttention's
};

std::vector<Shape> known_shapes() {
  auto video = [](int64_t f, int64_t h, int64_t w) {
    TokenLayout t;
    t.frames = f;
    t.height = h;
    t.width = w;
    return t;
  };
  return {{"wan", 40, 128, video(21, 30, 52)},       // Wan2.1-14B 480p: N = 32760
          {"hunyuan", 24, 128, video(21, 45, 80)},   // HunyuanVideo-like: N = 75600
          {"cog", 48, 64, video(23, 32, 48)}};        // CogVideoX-like: N = 35328
}

// A MOD-DiT-shaped video mask for one head: the union of diagonals (nearest the
// main one first) and key columns, as the method's masks are, plus the frame
// block-diagonal for some heads, grown line by line until it reaches `density`.
std::vector<uint8_t> moddit_shaped_mask(int n, double density, const TokenLayout& tk,
                                        const BlockGrid& grid, std::mt19937& rng) {
  std::vector<uint8_t> m(size_t(n) * n, 0);
  int64_t live = 0;
  auto set = [&](int i, int j) {
    uint8_t& b = m[size_t(i) * n + j];
    live += b == 0;
    b = 1;
  };
  for (int i = 0; i < n; ++i) set(i, i);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t target = int64_t(std::ceil(density * n * n));
  if (u(rng) < 0.3 && density >= 0.2) {  // a "temporal-local" head: frame block-diagonal
    const int64_t P = tk.tokens_per_frame();
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const int64_t fi0 = grid.video_block_begin(i) / P, fi1 = (grid.video_block_end(i) - 1) / P;
        const int64_t fj0 = grid.video_block_begin(j) / P, fj1 = (grid.video_block_end(j) - 1) / P;
        if (fi0 <= fj1 && fj0 <= fi1 && live < target) set(i, j);
      }
  }
  std::vector<int> cols(n);
  std::iota(cols.begin(), cols.end(), 0);
  std::shuffle(cols.begin(), cols.end(), rng);
  const double col_share = 0.5 * u(rng);
  int next_col = 0, next_diag = 1;
  while (live < target && (next_col < n || next_diag < n)) {
    if (next_col < n && (u(rng) < col_share || next_diag >= n)) {
      const int j = cols[next_col++];
      for (int i = 0; i < n; ++i) set(i, j);
    } else {
      const int d = next_diag++;
      for (int i = 0; i + d < n; ++i) {
        set(i, i + d);
        set(i + d, i);
      }
    }
  }
  return m;
}

BlockLayout make_layout(const std::string& kind, double density, int heads, const Shape& s,
                        const BlockGrid& grid, uint32_t seed) {
  const int nb = grid.num_blocks(), n = grid.num_video_blocks;
  std::mt19937 rng(seed);
  BlockMask mask(1, heads, nb, nb, false);
  std::uniform_real_distribution<double> u(0, 1);
  const double p = n > 1 ? std::max(0.0, (density - 1.0 / n) / (1.0 - 1.0 / n)) : 1.0;
  for (int h = 0; h < heads; ++h) {
    std::vector<uint8_t> vm;
    if (kind == "random") {
      vm.assign(size_t(n) * n, 0);
      for (size_t i = 0; i < vm.size(); ++i) vm[i] = u(rng) < p;
    } else {
      vm = moddit_shaped_mask(n, density, s.tokens, grid, rng);
    }
    place_video_mask(vm.data(), grid, mask, 0, h);
  }
  return to_layout(mask);
}

// Live (query, key) pairs of a layout, in tokens (keys that are padding excluded).
double live_pairs(const BlockLayout* l, const BlockGrid& g, int heads, int batch) {
  const int nb = g.num_blocks();
  if (!l) return double(batch) * heads * double(g.starts.back()) * g.starts.back();
  double pairs = 0;
  for (int64_t r = 0; r < l->rows(); ++r) {
    const int qb = int(r % nb);
    double keys = 0;
    for (int32_t i = l->row_ptr[r]; i < l->row_ptr[r + 1]; ++i) keys += g.block_len(l->col_idx[i]);
    pairs += keys * g.block_len(qb);
  }
  return pairs;
}

struct Options {
  std::string shapes = "wan,hunyuan,cog";
  std::string densities = "1,0.5,0.2,0.1,0.05";
  std::string layouts = "random,moddit";
  int iters = 5;
  int block_size = 128;
  std::string dtype = "bf16";
  bool map = true;
  std::string json;
  bool overhead = true;       // the MOD-DiT overhead table and state line
  bool overhead_only = false; // skip the kernel sweep
  OverheadOptions overhead_opts;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) if (!item.empty()) out.push_back(item);
  return out;
}

// Milliseconds per call of each of `calls`. A timed run queues `reps` calls back
// to back and synchronizes once, so that a call's host work (argument checks,
// the layout cache lookup, launches) overlaps the previous call's kernels as it
// does inside a model, and the clock measures the GPU; `reps` makes a run last
// about 25 ms. The calls' runs alternate: the GPU is power-capped and its clock
// drifts over seconds (docs/BENCHMARKS.md, Setup), so timing one call after the
// other would hand the second a hotter, slower clock. Median of `iters` runs
// each. (Timing one call at a time with a synchronize around it also added its
// host work to the kernel time.)
std::vector<double> median_ms(Backend& be, const std::vector<AttentionCall>& calls, int iters) {
  using clock = std::chrono::steady_clock;
  auto run = [&](const AttentionCall& call, int reps) {
    const auto t0 = clock::now();
    for (int r = 0; r < reps; ++r) be.attention(call);
    be.synchronize();
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count() / reps;
  };
  std::vector<int> reps;
  for (const AttentionCall& c : calls) {
    run(c, 1);  // warm-up (module load, layout upload)
    reps.push_back(std::clamp(int(25.0 / std::max(run(c, 1), 1e-3)), 1, 200));
  }
  std::vector<std::vector<double>> t(calls.size());
  for (int i = 0; i < iters; ++i)
    for (size_t c = 0; c < calls.size(); ++c) t[c].push_back(run(calls[c], reps[c]));
  std::vector<double> med;
  for (auto& v : t) {
    std::sort(v.begin(), v.end());
    med.push_back(v[v.size() / 2]);
  }
  return med;
}

void run_bench(const Options& o) {
  check_range(o.iters, 1, 1000, "--iters");
  check_range(o.overhead_opts.layers, 1, kMaxLayers, "--overhead-layers");
  std::vector<double> densities;
  for (const std::string& d : split(o.densities)) {
    size_t used = 0;
    double x = std::nan("");
    try {
      x = std::stod(d, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MODDIT_CHECK(used == d.size() && x > 0.0 && x <= 1.0, "--densities: '", d,
                 "' is not a density in (0, 1]");
    densities.push_back(x);
  }
  if (!o.json.empty()) check_output_file(o.json);  // before the sweep, not after it
  const bool gpu = cuda_available();
  MODDIT_CHECK(gpu || o.overhead, "bench: the kernel sweep needs the CUDA backend and a GPU (",
               "moddit was built without CUDA or no device is present)");
  std::shared_ptr<Backend> be = gpu ? make_cuda_backend(0, cuda_options_from_environment()) : nullptr;
  if (!gpu || o.overhead_only) {
    if (!gpu) std::printf("kernel sweep skipped: no CUDA device (or built without CUDA)\n");
    print_moddit_overhead(o.overhead_opts, be.get());
    return;
  }
  const DType dt = dtype_from_string(o.dtype);
  MODDIT_CHECK(dt == DType::BF16 || dt == DType::F16, "bench: --dtype must be bf16 or f16");
  std::printf("device: %s\n", be->name().c_str());
  std::printf("%-8s %-7s %7s %7s %10s %8s %10s %8s %8s\n", "shape", "layout", "target", "density",
              "ms", "TFLOP/s", "ms+map", "map_cost", "rel.err");
  std::ostringstream js;
  js << "[";
  bool first = true;
  std::vector<Shape> all = known_shapes();
  for (const std::string& name : split(o.shapes)) {
    auto it = std::find_if(all.begin(), all.end(), [&](const Shape& s) { return s.name == name; });
    MODDIT_CHECK(it != all.end(), "bench: unknown shape '", name, "' (wan, hunyuan, cog)");
    const Shape& s = *it;
    const int B = 1, H = s.heads, D = s.dim;
    const int64_t N = s.tokens.total_tokens();
    const BlockGrid grid = make_block_grid(s.tokens, o.block_size);
    const size_t numel = size_t(B) * N * H * D;
    // Random inputs: one host chunk of normal bf16 values tiled over each tensor.
    std::vector<uint16_t> chunk(size_t(1) << 22);
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& x : chunk) x = dt == DType::BF16 ? f32_to_bf16(nd(rng)) : f32_to_f16(nd(rng));
    std::vector<std::shared_ptr<void>> bufs;
    for (int t = 0; t < 4; ++t) {
      bufs.push_back(be->allocate(numel * 2));
      for (size_t off = 0; off < numel; off += chunk.size()) {
        const size_t len = std::min(chunk.size(), numel - off);
        const size_t shift = (size_t(t) * 7919 + off / chunk.size() * 104729) % (chunk.size() - len + 1);
        be->copy_from_host(static_cast<uint16_t*>(bufs[t].get()) + off, chunk.data() + shift, len * 2);
      }
    }
    const int n = grid.num_video_blocks;
    auto lse = be->allocate(size_t(B) * H * N * sizeof(float));
    auto map = be->allocate(size_t(B) * H * n * n * sizeof(int32_t));
    AttentionCall call;
    call.q = make_view(bufs[0].get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    call.k = make_view(bufs[1].get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    call.v = make_view(bufs[2].get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    call.out = make_view(bufs[3].get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    call.tokens = &s.tokens;
    call.block_size = o.block_size;
    call.lse = static_cast<float*>(lse.get());

    for (const double density : densities) {
      for (const std::string& kind : split(o.layouts)) {
        BlockLayout layout;
        const BlockLayout* lp = nullptr;
        if (density < 1.0) {
          layout = make_layout(kind, density, H, s, grid, 1234u + uint32_t(density * 1000));
          lp = &layout;
        } else if (kind != split(o.layouts).front()) {
          continue;  // dense: one row is enough
        }
        const double real_density = lp ? video_density(layout, grid) : 1.0;
        call.layout = lp;
        call.map_counts = nullptr;
        std::vector<AttentionCall> calls{call};
        if (o.map) {
          calls.push_back(call);
          calls.back().map_counts = static_cast<int32_t*>(map.get());
        }
        const std::vector<double> t = median_ms(*be, calls, o.iters);
        // Each call once more, its output against the CPU reference (sampled rows).
        double err = 0.0;
        const double bound = eval::output_error_bound(dt);
        const std::string lname = lp ? kind : "dense";
        for (const AttentionCall& c : calls) {
          be->attention(c);
          const double e = eval::sampled_output_error(*be, c);
          MODDIT_CHECK(e <= bound, "bench: ", s.name, " ", lname, " density ", density,
                       c.map_counts ? " with the map" : "", ": the output differs from the CPU ",
                       "reference (relative L2 error ", e, " > ", bound, " on sampled rows)");
          err = std::max(err, e);
        }
        const double ms = t[0], ms_map = o.map ? t[1] : 0.0;
        const double flops = 4.0 * D * live_pairs(lp, grid, H, B);
        const double tflops = flops / (ms * 1e-3) / 1e12;
        std::printf("%-8s %-7s %7.2f %7.3f %10.3f %8.1f %10.3f %7.0f%% %8.1e\n", s.name.c_str(),
                    lname.c_str(), density, real_density, ms, tflops, ms_map,
                    o.map ? 100.0 * (ms_map / ms - 1.0) : 0.0, err);
        std::fflush(stdout);
        js << (first ? "" : ",") << "\n  {\"shape\": \"" << s.name << "\", \"layout\": \"" << lname
           << "\", \"heads\": " << H << ", \"dim\": " << D << ", \"seq_len\": " << N
           << ", \"target_density\": " << density << ", \"density\": " << real_density
           << ", \"ms\": " << ms << ", \"tflops\": " << tflops << ", \"ms_with_map\": " << ms_map
           << ", \"rel_err\": " << err << "}";
        first = false;
      }
    }
  }
  js << "\n]\n";
  if (o.overhead) print_moddit_overhead(o.overhead_opts, be.get());
  if (!o.json.empty())  // every write checked, atomically (io/atomic_file.hpp)
    write_file_atomic(o.json, "{\"device\": \"" + be->name() + "\", \"results\": " + js.str() + "}\n");
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "bench",
      "Effective TFLOP/s of the CUDA dense and block-sparse attention at video-DiT shapes "
      "(wan: H=40 N=32760 D=128, hunyuan: H=24 N=75600 D=128, cog: H=48 N=35328 D=64; B=1) "
      "and densities, on random and MOD-DiT-shaped layouts, with the exact-map cost, each "
      "call's output checked against the CPU reference on sampled rows (a mismatch fails "
      "the run); then "
      "MOD-DiT's host work per call as a share of dense attention at wan (CFG batch 2) and "
      "the whole model's MOD-DiT state. Without a GPU: the host work and state only.");
  cmd->add_option("--shapes", o->shapes, "comma list of wan, hunyuan, cog")->capture_default_str();
  cmd->add_option("--densities", o->densities, "comma list of video densities (1 = dense)")
      ->capture_default_str();
  cmd->add_option("--layouts", o->layouts, "comma list of random, moddit")->capture_default_str();
  cmd->add_option("--iters", o->iters, "timed runs of about 25 ms each (median)")->capture_default_str();
  cmd->add_option("--block-size", o->block_size, "64 or 128")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "bf16 or f16")->capture_default_str();
  cmd->add_flag("!--no-map", o->map, "skip the runs with the exact sparsity map");
  cmd->add_option("--json", o->json, "also write the results to this JSON file");
  cmd->add_flag("!--no-overhead", o->overhead,
                "skip the MOD-DiT overhead table (plan + observe vs dense attention at wan, "
                "CFG batch 2) and the whole-model state line");
  cmd->add_flag("--overhead-only", o->overhead_only,
                "only the MOD-DiT overhead table and state line (no kernel sweep)");
  cmd->add_option("--overhead-layers", o->overhead_opts.layers,
                  "layers of the whole-model state (Wan2.1-14B: 40)")
      ->capture_default_str();
  cmd->callback([o] {
    o->overhead_opts.iters = o->iters;
    run_bench(*o);
  });
}

}  // namespace
}  // namespace moddit::cli

MODDIT_REGISTER_COMMAND(bench, 60, moddit::cli::setup);
