#pragma once
// Attention trajectories: Q/K/V per (step, layer), the input of every evaluation
// and of the Sparse-vDiT search. File format: one safetensors file (DESIGN.md 6),
// tensors q/s{step}/l{layer} (and k/, v/) of shape [B, N, H, D], dtype F32, BF16 or
// F16; __metadata__ keys moddit.trajectory="1", frames, height, width, text_tokens,
// text_valid, text_position, num_steps, source.
#include <memory>
#include <string>
#include <vector>

#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit {

struct TrajectoryInfo {
  TokenLayout tokens;
  int num_steps = 0;           // schedule length T
  int batch = 1, heads = 0, head_dim = 0;
  std::vector<int> steps;      // recorded steps, ascending
  std::vector<int> layers;     // recorded layers, ascending (same for every step)
  std::string source;          // free text
};

class TrajectorySource {
 public:
  virtual ~TrajectorySource() = default;
  virtual const TrajectoryInfo& info() const = 0;
  // Loads (step, layer); throws moddit::Error if absent.
  virtual void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) = 0;
};

// Opens and validates a trajectory file (every error names the file and the
// problem); only a regular file is opened. load() refuses a tensor holding NaN
// or Inf, naming it.
std::unique_ptr<TrajectorySource> open_trajectory(const std::string& path);
// The same over a whole file's bytes in memory (`name` stands for the path in
// errors): a plain function of the bytes, for tests and fuzzing.
std::unique_ptr<TrajectorySource> open_trajectory_bytes(std::shared_ptr<const std::string> bytes,
                                                        const std::string& name);

// Writes every (step, layer) of `source` to `path` atomically (temp file + rename),
// converting to `dtype`. `progress` (may be null) is called with (done, total).
void write_trajectory(TrajectorySource& source, const std::string& path, DType dtype,
                      void (*progress)(int done, int total) = nullptr);

// The synthetic stand-in for a real model (DESIGN.md 6): a procedural video latent
// with moving objects and camera motion, frame-major tokens, 3D rotary positions,
// per-head projections making spatial, temporal, global (sink) and mixed heads, and
// a noise schedule (early steps noise-dominated).
struct SyntheticSpec {
  int frames = 6, height = 16, width = 16;
  int text_tokens = 0, text_valid = 0;
  std::string text_position = "none";
  int num_steps = 50;
  int layers = 2;
  int heads = 8;
  int head_dim = 64;
  int batch = 1;
  unsigned seed = 42;
  // Spreads the heads' sharpness: layer l's heads get logit scales exp(spread z),
  // z evenly over [-1, 1] (a per-layer random order), so some heads are sharper
  // and some nearly uniform. 0 (the default here and in the test specs): every
  // scale 1. `moddit demo` uses kModditTinyHeadLogitSpread.
  double head_logit_spread = 0.0;
  // A constant vector (per head, random direction, each component value_offset
  // times a standard normal; a token's value components have variance about 1)
  // added to every value: it leaves the attention unchanged and lowers rel_l2 (the
  // dense output no longer averages to nearly zero; the unfitted generator's oracle
  // rel_l2 is over 3 times moddit-tiny's at 0.15). 0 (the default here and in the
  // test specs): none.
  // `moddit demo` uses kModditTinyValueOffset.
  double value_offset = 0.0;
  // Throws moddit::Error naming a setting out of its range (with the reason),
  // before anything is generated or allocated. make_synthetic() runs it.
  void validate() const;
  std::string describe() const;  // goes into TrajectoryInfo::source
};
// `moddit demo`'s head_logit_spread: fitted so that the demo's default trajectory's
// oracle recall over density follows moddit-tiny's (docs/quality/attention_stats.json).
constexpr double kModditTinyHeadLogitSpread = 3.5;
// `moddit demo`'s value_offset: fitted so that its oracle rel_l2 at 0.15 is near
// moddit-tiny's (the same file).
constexpr double kModditTinyValueOffset = 0.3;
std::unique_ptr<TrajectorySource> make_synthetic(const SyntheticSpec& spec);

}  // namespace moddit
