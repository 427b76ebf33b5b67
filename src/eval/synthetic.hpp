#pragma once
// Internals of the synthetic trajectory generator (make_synthetic in
// moddit/trajectory.hpp), exposed for tests and for reports that want to name
// what each synthetic head was built to do.
#include <cstdint>
#include <vector>

#include "moddit/trajectory.hpp"

namespace moddit::synthetic {

// What a synthetic head was built to attend to.
enum class HeadKind {
  Spatial,   // a local neighbourhood in its own frame: near-diagonal / frame blocks
  Temporal,  // the same spatial position in every frame: diagonals at offsets k*P
  Sink,      // a few "sink" key tokens every query attends to: vertical stripes
  Mixed,     // spatio-temporal neighbourhood + appearance (object) similarity
};
const char* to_string(HeadKind kind);
// One letter per kind: S, T, G (global/sink), M.
char kind_letter(HeadKind kind);

HeadKind head_kind(const SyntheticSpec& spec, int layer, int head);

// Flow-matching noise level s_t of step t (x_t = (1 - s_t) clean + s_t noise):
// s_0 = 1 (pure noise), decreasing to about 0.06 at the last step (shifted
// schedule, shift 3, as video DiT samplers use).
float noise_level(int step, int num_steps);

// Sequence indices (0..N-1, text included) of the sink key tokens of batch item b.
std::vector<int64_t> sink_tokens(const SyntheticSpec& spec, int batch_item);

}  // namespace moddit::synthetic
