// The synthetic trajectory generator (DESIGN.md 6): a procedural stand-in for a
// video DiT, cheap enough to run inside the demo, deterministic from the seed,
// and generated per (step, layer) on demand.
//
// Model of one batch item:
//  - A latent video of F frames x h x w tokens with C channels: a textured
//    background (plane waves) seen through a panning camera, and a few soft
//    round objects, each with its own velocity and appearance vector.
//  - Flow-matching noising x_t = (1 - s_t) clean + s_t noise with one fixed noise
//    sample; s_t goes from 1 (step 0) to ~0.06 (last step). The "clean" estimate
//    also drifts slightly with s_t (objects and textures shift), so attention
//    patterns change smoothly over the steps.
//  - Per (layer, head) projections into q/k/v. Head dims are rotary pairs split
//    into frame / y / x groups (3D RoPE, as Wan and HunyuanVideo do). In every
//    group the high-frequency half of the pairs carries a *positional template*
//    (the same vector for q and k, so after RoPE q_i . k_j is a kernel peaked at
//    zero relative offset); the low-frequency half carries *content* (linear
//    projections of x_t, nearly position-independent, so tokens of similar
//    appearance attract); the lowest frame pair (practically unrotated) carries
//    two constant query components: one matches a large key component on a few
//    "sink" tokens (massive activations; their keys carry no template), the
//    other a key component on the valid text tokens, sized so that text takes
//    a chosen share of each video query's attention (more in mixed heads).
//    Keeping the three on disjoint pairs avoids cross terms, so a head's kind is
//    controlled by how much energy each part gets:
//      spatial:  strong y/x and frame templates -> local neighbourhood in-frame
//      temporal: sharp y/x template, (almost) no frame template -> the same
//                position in every frame (diagonals at multiples of the frame)
//      sink:     strong sink component -> vertical stripes
//      mixed:    weaker templates with frame decay + strong content similarity
//  - Timestep modulation (as adaLN does in DiTs): the structured parts are scaled
//    by gamma(t) = gamma_min + (1 - gamma_min) cbrt(1 - s_t), so logit contrasts
//    shrink by gamma^2 at early steps, where noise dominates and attention is
//    diffuse; structure forms over the first steps and then sharpens slowly.
//    A slow per-head oscillation on gamma makes pattern intensities drift.
//  - Text tokens (if any) get fixed random embeddings, no RoPE and no template;
//    padded text rows are pure random numbers, different at every (step, layer).
#include "eval/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {
namespace synthetic {
namespace {

constexpr double kPi = 3.14159265358979323846;

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A stream key from the seed and indices: every stream is independent, so any
// (step, layer) can be generated alone and in any order.
uint64_t key(uint64_t seed, uint64_t tag, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0,
             uint64_t d = 0) {
  uint64_t h = splitmix(seed ^ 0x6d6f64646974ull);
  for (uint64_t v : {tag, a, b, c, d}) h = splitmix(h ^ v);
  return h;
}

// Our own generator (std distributions differ between standard libraries, and
// the trajectory must be the same everywhere for a given seed).
class Rng {
 public:
  explicit Rng(uint64_t k) : state_(k) {}
  uint64_t next() { return splitmix(state_++); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float uniform(float lo, float hi) { return lo + static_cast<float>(uniform()) * (hi - lo); }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  float normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(2 * kPi * u2));
    have_spare_ = true;
    return static_cast<float>(r * std::cos(2 * kPi * u2));
  }

 private:
  uint64_t state_;
  bool have_spare_ = false;
  float spare_ = 0.f;
};

enum Tag : uint64_t {
  kTagKinds = 1,
  kTagHead = 2,
  kTagScene = 3,
  kTagNoise = 4,
  kTagText = 5,
  kTagPad = 6,
  kTagSinks = 7,
  kTagSpread = 8,
};

struct SinkToken {
  int64_t video_index;  // within the video tokens
  float strength;
};

std::vector<SinkToken> make_sinks(const SyntheticSpec& spec, int b) {
  Rng rng(key(spec.seed, kTagSinks, static_cast<uint64_t>(b)));
  const int64_t V = int64_t(spec.frames) * spec.height * spec.width;
  const int count = static_cast<int>(std::min<int64_t>(V, 2 + rng.below(3)));
  // The first video token is a sink (as observed in real DiTs), the others are
  // scattered over the video.
  std::vector<SinkToken> sinks = {{0, rng.uniform(1.f, 1.03f)}};
  while (static_cast<int>(sinks.size()) < count) {
    const int64_t v = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(V));
    bool dup = false;
    for (const auto& s : sinks) dup = dup || s.video_index == v;
    if (!dup) sinks.push_back({v, rng.uniform(1.f, 1.03f)});
  }
  return sinks;
}

TokenLayout layout_of(const SyntheticSpec& spec) {
  TokenLayout L;
  L.frames = spec.frames;
  L.height = spec.height;
  L.width = spec.width;
  L.text_tokens = spec.text_tokens;
  L.text_valid = spec.text_valid;
  L.text_position = text_position_from_string(spec.text_position);
  return L;
}

}  // namespace

const char* to_string(HeadKind kind) {
  switch (kind) {
    case HeadKind::Spatial: return "spatial";
    case HeadKind::Temporal: return "temporal";
    case HeadKind::Sink: return "sink";
    case HeadKind::Mixed: return "mixed";
  }
  return "?";
}

char kind_letter(HeadKind kind) {
  switch (kind) {
    case HeadKind::Spatial: return 'S';
    case HeadKind::Temporal: return 'T';
    case HeadKind::Sink: return 'G';
    case HeadKind::Mixed: return 'M';
  }
  return '?';
}

HeadKind head_kind(const SyntheticSpec& spec, int layer, int head) {
  MODDIT_CHECK(head >= 0 && head < spec.heads && layer >= 0, "synthetic: no head ", head,
               " in layer ", layer);
  // Equal shares of the four kinds; the remainder goes by a layer-dependent
  // preference (early layers lean spatial, later ones temporal/mixed), and the
  // order is shuffled per layer so a head index changes kind between layers.
  static constexpr HeadKind kPreference[4] = {HeadKind::Spatial, HeadKind::Temporal,
                                              HeadKind::Mixed, HeadKind::Sink};
  std::vector<HeadKind> kinds;
  for (int i = 0; i < spec.heads / 4 * 4; ++i) kinds.push_back(kPreference[i % 4]);
  for (int i = 0; i < spec.heads % 4; ++i) kinds.push_back(kPreference[(i + layer) % 4]);
  Rng rng(key(spec.seed, kTagKinds, static_cast<uint64_t>(layer)));
  for (int i = static_cast<int>(kinds.size()) - 1; i > 0; --i)
    std::swap(kinds[static_cast<size_t>(i)], kinds[static_cast<size_t>(rng.below(i + 1))]);
  return kinds[static_cast<size_t>(head)];
}

float noise_level(int step, int num_steps) {
  const double u = 1.0 - static_cast<double>(step) / num_steps;  // 1 .. 1/T
  constexpr double kShift = 3.0;
  return static_cast<float>(kShift * u / (1.0 + (kShift - 1.0) * u));
}

std::vector<int64_t> sink_tokens(const SyntheticSpec& spec, int batch_item) {
  const TokenLayout L = layout_of(spec);
  std::vector<int64_t> out;
  for (const auto& s : make_sinks(spec, batch_item)) out.push_back(L.video_begin() + s.video_index);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace synthetic

namespace {

using synthetic::HeadKind;
using synthetic::Rng;
using synthetic::key;

constexpr int kChannels = 16;  // latent channels (Wan's VAE has 16)
constexpr int kWaves = 3;      // background plane waves per channel
constexpr int kObjects = 3;

enum class PairRole { Template, Content, Sink };
struct RotaryPair {
  int axis;  // 0 frame, 1 y, 2 x
  int index_in_group;
  float omega;
  PairRole role;
};

struct HeadParams {
  HeadKind kind;
  std::vector<float> templ;   // D, zero outside template pairs (shared by q and k)
  std::vector<float> wq, wk;  // content dims x C
  std::vector<float> wv;      // D x C
  float sink_q = 0.f, sink_k = 0.f;  // constant components (sink pair, 1st dim)
  float text_q = 0.f, text_k = 0.f;  // the same for valid text keys (sink pair, 2nd dim)
  float gamma_min = 0.35f, drift_amp = 0.f, drift_freq = 1.f, drift_phase = 0.f;
  // Multiplies the head's queries, so every logit of the head (SyntheticSpec::
  // head_logit_spread; 1 when the spread is 0).
  float logit_scale = 1.f;
  // Added to every value of the head (SyntheticSpec::value_offset; zeros when 0).
  std::vector<float> v_offset;
};

struct SceneObject {
  float cx, cy, vx, vy, radius, dx, dy;
  float appearance[kChannels];
};

struct Scene {
  float pan_x = 0.f, pan_y = 0.f;
  float kx[kChannels][kWaves], ky[kChannels][kWaves], phase[kChannels][kWaves],
      dphase[kChannels][kWaves];
  SceneObject objects[kObjects];
  std::vector<float> noise;      // V x C
  std::vector<float> text;       // text_tokens x C
  std::vector<float> sink_coef;  // N: key-side sink component per sequence token
  std::vector<uint8_t> is_sink;  // N
  std::vector<uint8_t> is_text;  // N: valid text tokens
};

class SyntheticSource final : public TrajectorySource {
 public:
  explicit SyntheticSource(const SyntheticSpec& spec) : spec_(spec) {
    spec.validate();
    info_.tokens = synthetic::layout_of(spec);
    info_.num_steps = spec.num_steps;
    info_.batch = spec.batch;
    info_.heads = spec.heads;
    info_.head_dim = spec.head_dim;
    for (int s = 0; s < spec.num_steps; ++s) info_.steps.push_back(s);
    for (int l = 0; l < spec.layers; ++l) info_.layers.push_back(l);
    info_.source = spec.describe();

    build_pairs();
    build_rotary_table();
    for (int l = 0; l < spec.layers; ++l)
      for (int h = 0; h < spec.heads; ++h) heads_.push_back(make_head(l, h));
    spread_logit_scales();
    for (int b = 0; b < spec.batch; ++b) scenes_.push_back(make_scene(b));
  }

  const TrajectoryInfo& info() const override { return info_; }

  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override;

 private:
  void build_pairs();
  void build_rotary_table();
  HeadParams make_head(int layer, int head) const;
  void spread_logit_scales();
  float neighbourhood_log_mass(const std::vector<float>& templ) const;
  Scene make_scene(int b) const;
  void noisy_latent(int b, int step, std::vector<float>& out) const;
  float gamma(const HeadParams& hp, int step) const;

  SyntheticSpec spec_;
  TrajectoryInfo info_;
  std::vector<RotaryPair> pairs_;
  std::vector<int> content_dims_;  // head dims carrying content
  int sink_pair_ = 0;
  std::vector<float> rot_cos_, rot_sin_;  // V x (D/2)
  std::vector<HeadParams> heads_;         // layer-major
  std::vector<Scene> scenes_;
  // x_t of every batch item for cached_step_ (layers of one step share it).
  int cached_step_ = -1;
  std::vector<std::vector<float>> latent_;
};

void SyntheticSource::build_pairs() {
  // Split as Wan does: y and x get a third of the pairs each, the frame axis the rest.
  const int P = spec_.head_dim / 2;
  const int ny = P / 3, nx = P / 3, nf = P - ny - nx;
  const int counts[3] = {nf, ny, nx};
  for (int axis = 0; axis < 3; ++axis) {
    const int n = counts[axis];
    for (int i = 0; i < n; ++i) {
      RotaryPair p;
      p.axis = axis;
      p.index_in_group = i;
      p.omega = static_cast<float>(std::pow(10000.0, -static_cast<double>(i) / n));
      // High-frequency half: positional template; the rest: content; the
      // lowest-frequency frame pair (practically unrotated): sinks.
      if (axis == 0 && i == n - 1) p.role = PairRole::Sink;
      else p.role = i < n / 2 ? PairRole::Template : PairRole::Content;
      if (p.role == PairRole::Sink) sink_pair_ = static_cast<int>(pairs_.size());
      pairs_.push_back(p);
    }
  }
  for (int p = 0; p < P; ++p)
    if (pairs_[static_cast<size_t>(p)].role == PairRole::Content) {
      content_dims_.push_back(2 * p);
      content_dims_.push_back(2 * p + 1);
    }
}

void SyntheticSource::build_rotary_table() {
  const int64_t V = info_.tokens.video_tokens(), HW = info_.tokens.tokens_per_frame();
  const int P = spec_.head_dim / 2;
  rot_cos_.resize(static_cast<size_t>(V * P));
  rot_sin_.resize(static_cast<size_t>(V * P));
  for (int64_t t = 0; t < V; ++t) {
    const int64_t coord[3] = {t / HW, (t % HW) / spec_.width, t % spec_.width};
    for (int p = 0; p < P; ++p) {
      const RotaryPair& rp = pairs_[static_cast<size_t>(p)];
      const double angle = static_cast<double>(rp.omega) * static_cast<double>(coord[rp.axis]);
      rot_cos_[static_cast<size_t>(t * P + p)] = static_cast<float>(std::cos(angle));
      rot_sin_[static_cast<size_t>(t * P + p)] = static_cast<float>(std::sin(angle));
    }
  }
}

float SyntheticSource::neighbourhood_log_mass(const std::vector<float>& templ) const {
  // The template logit of key j for query i is a sum of one term per axis
  // (frame, y, x), and the keys form a full grid, so log sum_j exp(logit) is the
  // sum over axes of a 1-D log-sum-exp: exact and O(F + h + w) per pair.
  const TokenLayout& L = info_.tokens;
  const int64_t extent[3] = {L.frames, L.height, L.width};
  const float inv_sqrt_d = 1.f / std::sqrt(static_cast<float>(spec_.head_dim));
  double total = 0;
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t n = extent[axis], centre = n / 2;
    std::vector<double> logit(static_cast<size_t>(n), 0.0);
    for (size_t p = 0; p < pairs_.size(); ++p) {
      if (pairs_[p].axis != axis) continue;
      const double e = double(templ[2 * p]) * templ[2 * p] + double(templ[2 * p + 1]) * templ[2 * p + 1];
      if (e == 0) continue;
      for (int64_t c = 0; c < n; ++c)
        logit[static_cast<size_t>(c)] +=
            e * std::cos(double(pairs_[p].omega) * double(centre - c)) * inv_sqrt_d;
    }
    const double mx = *std::max_element(logit.begin(), logit.end());
    double sum = 0;
    for (double x : logit) sum += std::exp(x - mx);
    total += mx + std::log(sum);
  }
  return static_cast<float>(total);
}

HeadParams SyntheticSource::make_head(int layer, int head) const {
  Rng rng(key(spec_.seed, synthetic::kTagHead, static_cast<uint64_t>(layer),
              static_cast<uint64_t>(head)));
  HeadParams hp;
  hp.kind = synthetic::head_kind(spec_, layer, head);
  const int D = spec_.head_dim;
  const float sqrt_d = std::sqrt(static_cast<float>(D));

  // Kernel shape per kind: which template pairs are used (first_pair skips the
  // highest frequencies for a wider kernel) and the logit drop at offset 1
  // along y/x and along the frame axis (after the 1/sqrt(D) softmax scale).
  int first_pair = 0;
  float drop_yx = 1.f, drop_frame = 1.f, content = 1.f, sink = 1.f, text_share = 0.05f;
  bool frame_single_pair = false;
  switch (hp.kind) {
    case HeadKind::Spatial:
      first_pair = rng.below(2);
      drop_yx = first_pair == 0 ? rng.uniform(1.3f, 2.2f) : rng.uniform(0.45f, 0.8f);
      drop_frame = rng.uniform(3.f, 5.f);
      content = 1.0f;
      sink = 1.0f;
      text_share = rng.uniform(0.02f, 0.08f);
      break;
    case HeadKind::Temporal:
      drop_yx = rng.uniform(2.f, 3.f);
      drop_frame = rng.uniform(0.02f, 0.08f);  // mild decay over frame distance
      frame_single_pair = true;
      content = 0.6f;
      sink = 1.0f;
      text_share = rng.uniform(0.02f, 0.08f);
      break;
    case HeadKind::Sink:
      drop_yx = rng.uniform(0.6f, 1.0f);
      drop_frame = rng.uniform(1.f, 2.f);
      content = 0.5f;
      sink = rng.uniform(0.5f, 2.f);  // above the neighbourhood's pull, see below
      text_share = rng.uniform(0.02f, 0.05f);
      break;
    case HeadKind::Mixed:
      first_pair = rng.below(2);
      drop_yx = first_pair == 0 ? rng.uniform(0.8f, 1.3f) : rng.uniform(0.35f, 0.6f);
      drop_frame = rng.uniform(0.4f, 1.0f);
      content = rng.uniform(2.5f, 3.5f);
      sink = rng.uniform(2.f, 4.f);
      text_share = rng.uniform(0.1f, 0.35f);
      break;
  }
  // Deeper layers lean a little more on content (semantic attention).
  if (spec_.layers > 1) content *= 1.f + 0.3f * static_cast<float>(layer) / (spec_.layers - 1);

  hp.templ.assign(static_cast<size_t>(D), 0.f);
  for (int axis = 0; axis < 3; ++axis) {
    float drop = axis == 0 ? drop_frame : drop_yx * rng.uniform(0.85f, 1.15f);
    std::vector<int> used;
    int n_template = 0;
    for (const auto& p : pairs_)
      if (p.axis == axis && p.role == PairRole::Template) ++n_template;
    for (int p = 0; p < static_cast<int>(pairs_.size()); ++p) {
      const RotaryPair& rp = pairs_[static_cast<size_t>(p)];
      if (rp.axis != axis || rp.role != PairRole::Template) continue;
      if (axis == 0 && frame_single_pair) {
        if (rp.index_in_group == std::min(2, n_template - 1)) used.push_back(p);
      } else if (axis == 0 || rp.index_in_group >= std::min(first_pair, n_template - 1)) {
        used.push_back(p);
      }
    }
    double denom = 0;
    for (int p : used) denom += 1.0 - std::cos(pairs_[static_cast<size_t>(p)].omega);
    if (used.empty() || denom <= 0) continue;
    // Equal energy A per used pair: drop(1) = A * sum(1 - cos w) / sqrt(D).
    const double A = drop * sqrt_d / denom;
    for (int p : used) {
      const float phase = rng.uniform(0.f, static_cast<float>(2 * synthetic::kPi));
      const float amp = static_cast<float>(std::sqrt(A));
      hp.templ[static_cast<size_t>(2 * p)] = amp * std::cos(phase);
      hp.templ[static_cast<size_t>(2 * p + 1)] = amp * std::sin(phase);
    }
  }

  // Content: similar appearance (|x|^2 ~ C) gives a logit boost of about
  // `content`; k's weights are correlated (0.9) with q's, not equal.
  const size_t dc = content_dims_.size();
  const float sigma =
      dc > 0 ? std::sqrt(content * sqrt_d / (static_cast<float>(dc) * kChannels)) : 0.f;
  hp.wq.resize(dc * kChannels);
  hp.wk.resize(dc * kChannels);
  for (size_t i = 0; i < hp.wq.size(); ++i) {
    hp.wq[i] = sigma * rng.normal();
    hp.wk[i] = 0.9f * hp.wq[i] + 0.436f * sigma * rng.normal();
  }
  hp.wv.resize(static_cast<size_t>(D) * kChannels);
  const float v_scale = 1.f / std::sqrt(static_cast<float>(kChannels));
  for (auto& w : hp.wv) w = v_scale * rng.normal();

  // A sink key of strength 1 gets a logit boost of `sink` over keys far away.
  // Sink keys carry no positional template (massive activations dominate them).
  // For a sink head to be one, its sinks must outweigh a query's whole
  // neighbourhood: the boost is stated relative to log sum_j exp(template logit
  // i.j), measured for a query at the centre of the video (plus an allowance
  // for the content similarity a query has with its neighbours).
  const float log_mass = neighbourhood_log_mass(hp.templ);
  if (hp.kind == HeadKind::Sink) sink += log_mass + 0.5f;
  hp.sink_q = hp.sink_k = std::sqrt(sink * sqrt_d);
  // Valid text keys take a fraction r of a video query's mass (before content
  // effects): n_text exp(T) / (n_text exp(T) + exp(log_mass)) = r.
  if (spec_.text_valid > 0) {
    const float r = text_share;
    const float T = log_mass + std::log(r / (1.f - r)) - std::log(static_cast<float>(spec_.text_valid));
    hp.text_q = std::sqrt(std::fabs(T) * sqrt_d);
    hp.text_k = T < 0 ? -hp.text_q : hp.text_q;
  }
  hp.gamma_min = rng.uniform(0.28f, 0.42f);
  hp.drift_amp = rng.uniform(0.05f, 0.15f);
  hp.drift_freq = rng.uniform(0.5f, 1.5f);
  hp.drift_phase = rng.uniform(0.f, static_cast<float>(2 * synthetic::kPi));
  // Drawn last and always, so that value_offset changes nothing else.
  hp.v_offset.resize(static_cast<size_t>(D));
  for (float& o : hp.v_offset) o = static_cast<float>(spec_.value_offset) * rng.normal();
  return hp;
}

void SyntheticSource::spread_logit_scales() {
  // Real DiT layers mix very sharp heads with nearly uniform ones (moddit-tiny's
  // oracle recall still grows by 0.18 from density 0.5 to 1: a diffuse tail that
  // the kinds alone lack). Each layer's heads get logit scales exp(spread z), z
  // evenly over [-1, 1], in a per-layer random order (independent of the kinds).
  if (spec_.head_logit_spread == 0.0) return;
  const int H = spec_.heads;
  for (int l = 0; l < spec_.layers; ++l) {
    std::vector<int> rank(static_cast<size_t>(H));
    for (int h = 0; h < H; ++h) rank[static_cast<size_t>(h)] = h;
    Rng rng(key(spec_.seed, synthetic::kTagSpread, static_cast<uint64_t>(l)));
    for (int i = H - 1; i > 0; --i)
      std::swap(rank[static_cast<size_t>(i)], rank[static_cast<size_t>(rng.below(i + 1))]);
    for (int h = 0; h < H; ++h) {
      const double z = H > 1 ? -1.0 + 2.0 * rank[static_cast<size_t>(h)] / (H - 1) : 0.0;
      heads_[static_cast<size_t>(l * H + h)].logit_scale =
          static_cast<float>(std::exp(spec_.head_logit_spread * z));
    }
  }
}

Scene SyntheticSource::make_scene(int b) const {
  Rng rng(key(spec_.seed, synthetic::kTagScene, static_cast<uint64_t>(b)));
  Scene sc;
  const float two_pi = static_cast<float>(2 * synthetic::kPi);
  const float pan_dir = rng.uniform(0.f, two_pi), pan_speed = rng.uniform(0.3f, 1.0f);
  sc.pan_x = pan_speed * std::cos(pan_dir);
  sc.pan_y = pan_speed * std::sin(pan_dir);
  for (int c = 0; c < kChannels; ++c)
    for (int w = 0; w < kWaves; ++w) {
      const float wavelength = rng.uniform(4.f, 16.f), dir = rng.uniform(0.f, two_pi);
      sc.kx[c][w] = two_pi / wavelength * std::cos(dir);
      sc.ky[c][w] = two_pi / wavelength * std::sin(dir);
      sc.phase[c][w] = rng.uniform(0.f, two_pi);
      sc.dphase[c][w] = rng.uniform(-0.8f, 0.8f);
    }
  const float H = static_cast<float>(spec_.height), W = static_cast<float>(spec_.width);
  const float F = static_cast<float>(spec_.frames);
  for (auto& o : sc.objects) {
    o.radius = std::max(1.f, rng.uniform(0.12f, 0.22f) * std::min(H, W));
    const float dir = rng.uniform(0.f, two_pi), speed = rng.uniform(0.4f, 1.2f);
    o.vx = speed * std::cos(dir);
    o.vy = speed * std::sin(dir);
    // Centred in view at the middle frame.
    o.cx = rng.uniform(0.25f, 0.75f) * W - o.vx * 0.5f * (F - 1);
    o.cy = rng.uniform(0.25f, 0.75f) * H - o.vy * 0.5f * (F - 1);
    o.dx = rng.uniform(-1.5f, 1.5f);
    o.dy = rng.uniform(-1.5f, 1.5f);
    for (float& a : o.appearance) a = 1.2f * rng.normal();
  }

  const TokenLayout& L = info_.tokens;
  const int64_t V = L.video_tokens();
  Rng noise_rng(key(spec_.seed, synthetic::kTagNoise, static_cast<uint64_t>(b)));
  sc.noise.resize(static_cast<size_t>(V * kChannels));
  for (float& x : sc.noise) x = noise_rng.normal();
  Rng text_rng(key(spec_.seed, synthetic::kTagText, static_cast<uint64_t>(b)));
  sc.text.resize(static_cast<size_t>(L.text_tokens * kChannels));
  for (float& x : sc.text) x = text_rng.normal();

  const int64_t N = L.total_tokens();
  sc.sink_coef.assign(static_cast<size_t>(N), 0.f);
  sc.is_sink.assign(static_cast<size_t>(N), 0);
  sc.is_text.assign(static_cast<size_t>(N), 0);
  for (int64_t t = 0; t < L.text_valid; ++t) sc.is_text[static_cast<size_t>(L.text_begin() + t)] = 1;
  for (const auto& s : synthetic::make_sinks(spec_, b)) {
    const size_t n = static_cast<size_t>(L.video_begin() + s.video_index);
    sc.sink_coef[n] = s.strength;
    sc.is_sink[n] = 1;
  }
  return sc;
}

void SyntheticSource::noisy_latent(int b, int step, std::vector<float>& out) const {
  const Scene& sc = scenes_[static_cast<size_t>(b)];
  const float s = synthetic::noise_level(step, spec_.num_steps);
  const int64_t V = info_.tokens.video_tokens(), HW = info_.tokens.tokens_per_frame();
  out.resize(static_cast<size_t>(V * kChannels));
  for (int64_t t = 0; t < V; ++t) {
    const float f = static_cast<float>(t / HW);
    const float y = static_cast<float>((t % HW) / spec_.width);
    const float x = static_cast<float>(t % spec_.width);
    // Background in world coordinates: the camera pans over it.
    const float X = x + sc.pan_x * f, Y = y + sc.pan_y * f;
    float clean[kChannels];
    for (int c = 0; c < kChannels; ++c) {
      float v = 0.f;
      for (int w = 0; w < kWaves; ++w)
        v += std::cos(sc.kx[c][w] * X + sc.ky[c][w] * Y + sc.phase[c][w] + sc.dphase[c][w] * s);
      clean[c] = v * 0.8165f;  // sqrt(2 / kWaves): unit variance per channel
    }
    for (const auto& o : sc.objects) {
      const float ox = o.cx + o.vx * f + o.dx * s, oy = o.cy + o.vy * f + o.dy * s;
      const float d = std::sqrt((x - ox) * (x - ox) + (y - oy) * (y - oy));
      const float m = 1.f / (1.f + std::exp((d - o.radius) / 0.6f));
      for (int c = 0; c < kChannels; ++c) clean[c] += m * (o.appearance[c] - clean[c]);
    }
    const float* eps = &sc.noise[static_cast<size_t>(t * kChannels)];
    float* dst = &out[static_cast<size_t>(t * kChannels)];
    for (int c = 0; c < kChannels; ++c) dst[c] = (1.f - s) * clean[c] + s * eps[c];
  }
}

float SyntheticSource::gamma(const HeadParams& hp, int step) const {
  const float s = synthetic::noise_level(step, spec_.num_steps);
  // Structure forms quickly once the signal appears (cube root of the signal
  // fraction): noise-dominated at step 0, mostly formed by the end of a typical
  // warm-up, then slowly sharpening.
  const float base = hp.gamma_min + (1.f - hp.gamma_min) * std::cbrt(std::max(0.f, 1.f - s));
  const float phase = static_cast<float>(2 * synthetic::kPi) * hp.drift_freq *
                          static_cast<float>(step) / static_cast<float>(spec_.num_steps) +
                      hp.drift_phase;
  return base * (1.f + hp.drift_amp * std::sin(phase));
}

void SyntheticSource::load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) {
  MODDIT_CHECK(step >= 0 && step < spec_.num_steps, "synthetic trajectory: no step ", step,
               " (num_steps = ", spec_.num_steps, ")");
  MODDIT_CHECK(layer >= 0 && layer < spec_.layers, "synthetic trajectory: no layer ", layer,
               " (layers = ", spec_.layers, ")");
  const TokenLayout& L = info_.tokens;
  const int64_t B = spec_.batch, N = L.total_tokens(), H = spec_.heads, D = spec_.head_dim;
  const int P = spec_.head_dim / 2;
  for (HostTensor* t : {&q, &k, &v}) {
    const bool reuse = t->dtype == DType::F32 && t->shape[0] == B && t->shape[1] == N &&
                       t->shape[2] == H && t->shape[3] == D;
    if (!reuse) *t = HostTensor(DType::F32, B, N, H, D);
  }
  if (cached_step_ != step) {
    latent_.resize(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b) noisy_latent(b, step, latent_[static_cast<size_t>(b)]);
    cached_step_ = step;
  }
  std::vector<float> gam(static_cast<size_t>(H));
  for (int h = 0; h < H; ++h)
    gam[static_cast<size_t>(h)] = gamma(heads_[static_cast<size_t>(layer * H + h)], step);

  const size_t dc = content_dims_.size();
  std::vector<float> qrow(static_cast<size_t>(D)), krow(static_cast<size_t>(D));
  const int64_t vb = L.video_begin(), V = L.video_tokens();
  const int64_t tb = L.text_begin();
  for (int64_t b = 0; b < B; ++b) {
    const Scene& sc = scenes_[static_cast<size_t>(b)];
    for (int64_t n = 0; n < N; ++n) {
      float* qd = q.f32() + ((b * N + n) * H) * D;
      float* kd = k.f32() + ((b * N + n) * H) * D;
      float* vd = v.f32() + ((b * N + n) * H) * D;
      const bool video = n >= vb && n < vb + V;
      const int64_t text_index = n - tb;
      if (!video && text_index >= L.text_valid) {
        // Padded text: garbage rows, excluded as keys by every consumer.
        Rng rng(key(spec_.seed, synthetic::kTagPad, static_cast<uint64_t>(step),
                    static_cast<uint64_t>(layer), static_cast<uint64_t>(b),
                    static_cast<uint64_t>(n)));
        for (int64_t i = 0; i < H * D; ++i) {
          qd[i] = rng.normal();
          kd[i] = rng.normal();
          vd[i] = rng.normal();
        }
        continue;
      }
      const float* x = video ? &latent_[static_cast<size_t>(b)][static_cast<size_t>((n - vb) * kChannels)]
                             : &sc.text[static_cast<size_t>(text_index * kChannels)];
      const float sink_coef = sc.sink_coef[static_cast<size_t>(n)];
      const float v_gain = sc.is_sink[static_cast<size_t>(n)] ? 0.2f : 1.f;  // sinks carry little value
      for (int64_t h = 0; h < H; ++h) {
        const HeadParams& hp = heads_[static_cast<size_t>(layer * H + h)];
        const float g = gam[static_cast<size_t>(h)];
        if (video) {
          for (int64_t d = 0; d < D; ++d) qrow[static_cast<size_t>(d)] = g * hp.templ[static_cast<size_t>(d)];
        } else {
          std::fill(qrow.begin(), qrow.end(), 0.f);  // text has no position
        }
        if (sc.is_sink[static_cast<size_t>(n)]) std::fill(krow.begin(), krow.end(), 0.f);
        else krow = qrow;
        for (size_t i = 0; i < dc; ++i) {
          const float* wq = &hp.wq[i * kChannels];
          const float* wk = &hp.wk[i * kChannels];
          float aq = 0.f, ak = 0.f;
          for (int c = 0; c < kChannels; ++c) {
            aq += wq[c] * x[c];
            ak += wk[c] * x[c];
          }
          qrow[static_cast<size_t>(content_dims_[i])] = aq;
          krow[static_cast<size_t>(content_dims_[i])] = ak;
        }
        qrow[static_cast<size_t>(2 * sink_pair_)] = g * hp.sink_q;
        qrow[static_cast<size_t>(2 * sink_pair_ + 1)] = g * hp.text_q;
        krow[static_cast<size_t>(2 * sink_pair_)] = g * hp.sink_k * sink_coef;
        krow[static_cast<size_t>(2 * sink_pair_ + 1)] =
            sc.is_text[static_cast<size_t>(n)] ? g * hp.text_k : 0.f;
        const float ls = hp.logit_scale;
        for (float& qv : qrow) qv *= ls;
        float* qo = qd + h * D;
        float* ko = kd + h * D;
        if (video) {
          const float* cs = &rot_cos_[static_cast<size_t>((n - vb) * P)];
          const float* sn = &rot_sin_[static_cast<size_t>((n - vb) * P)];
          for (int p = 0; p < P; ++p) {
            const float q0 = qrow[static_cast<size_t>(2 * p)], q1 = qrow[static_cast<size_t>(2 * p + 1)];
            const float k0 = krow[static_cast<size_t>(2 * p)], k1 = krow[static_cast<size_t>(2 * p + 1)];
            qo[2 * p] = q0 * cs[p] - q1 * sn[p];
            qo[2 * p + 1] = q0 * sn[p] + q1 * cs[p];
            ko[2 * p] = k0 * cs[p] - k1 * sn[p];
            ko[2 * p + 1] = k0 * sn[p] + k1 * cs[p];
          }
        } else {
          std::copy(qrow.begin(), qrow.end(), qo);
          std::copy(krow.begin(), krow.end(), ko);
        }
        float* vo = vd + h * D;
        for (int64_t d = 0; d < D; ++d) {
          const float* wv = &hp.wv[static_cast<size_t>(d * kChannels)];
          float a = 0.f;
          for (int c = 0; c < kChannels; ++c) a += wv[c] * x[c];
          vo[d] = v_gain * a + hp.v_offset[static_cast<size_t>(d)];
        }
      }
    }
  }
}

}  // namespace

void SyntheticSpec::validate() const {
  // The generator keeps per-step, per-(layer, head) and per-batch-item state and
  // tables per token, all allocated up front: every count is bounded first.
  const char* grid = "the generator builds per-token tables";
  check_range(frames, 1, 4096, "synthetic: frames", grid);
  check_range(height, 1, 4096, "synthetic: height", grid);
  check_range(width, 1, 4096, "synthetic: width", grid);
  check_range(text_tokens, 0, 1 << 16, "synthetic: text_tokens");
  check_range(text_valid, 0, text_tokens, "synthetic: text_valid", "at most text_tokens");
  check_range(num_steps, 1, 10000, "synthetic: num_steps", "a denoising schedule");
  check_range(layers, 1, 1000, "synthetic: layers", "the generator keeps per-layer heads");
  check_range(heads, 1, 1024, "synthetic: heads", "the generator keeps per-head projections");
  check_range(head_dim, 16, 1024, "synthetic: head_dim", "3D rotary pairs need >= 16");
  MODDIT_CHECK(head_dim % 2 == 0, "synthetic: head_dim must be even (3D rotary pairs), got ",
               head_dim);
  check_range(batch, 1, 64, "synthetic: batch", "the generator keeps one scene per batch item");
  MODDIT_CHECK(std::isfinite(head_logit_spread) && head_logit_spread >= 0.0 &&
                   head_logit_spread <= 4.0,
               "synthetic: head_logit_spread must be in [0, 4] (heads' logit scales "
               "exp(+-spread)), got ", head_logit_spread);
  MODDIT_CHECK(std::isfinite(value_offset) && value_offset >= 0.0 && value_offset <= 100.0,
               "synthetic: value_offset must be in [0, 100] (a shared value component, in "
               "units of a token's value scale), got ", value_offset);
  const TokenLayout t = synthetic::layout_of(*this);
  t.validate();
  // q, k and v of one (step, layer) in f32, held at once by every consumer.
  check_fits_in_memory(uint64_t(checked_product({3, batch, t.total_tokens(), heads, head_dim, 4},
                                                INT64_MAX, "synthetic: q, k, v bytes")),
                       "synthetic: q, k and v of one (step, layer)");
}

std::string SyntheticSpec::describe() const {
  std::ostringstream os;
  os << "synthetic video-DiT stand-in (procedural, not a real model; moddit generator v1): seed "
     << seed << ", " << frames << " frames x " << height << "x" << width << " tokens";
  if (text_position != "none") os << ", " << text_tokens << " text tokens (" << text_valid
                                  << " valid) " << text_position << " the video";
  os << ", " << layers << " layers x " << heads << " heads, head_dim " << head_dim << ", batch "
     << batch << ", " << num_steps << " steps";
  if (head_logit_spread != 0.0) os << ", head logit spread " << head_logit_spread;
  if (value_offset != 0.0) os << ", value offset " << value_offset;
  if (head_logit_spread == kModditTinyHeadLogitSpread && value_offset == kModditTinyValueOffset)
    os << " (moddit demo's spec: oracle statistics fitted to moddit-tiny's, still a stand-in)";
  os << "; head kinds per layer (S spatial, T temporal, "
     << "G global/sink, M mixed):";
  if (heads > 0 && layers > 0 && layers <= 64) {
    for (int l = 0; l < layers; ++l) {
      os << " l" << l << "=";
      for (int h = 0; h < heads; ++h) os << synthetic::kind_letter(synthetic::head_kind(*this, l, h));
    }
  }
  return os.str();
}

std::unique_ptr<TrajectorySource> make_synthetic(const SyntheticSpec& spec) {
  return std::make_unique<SyntheticSource>(spec);
}

}  // namespace moddit
