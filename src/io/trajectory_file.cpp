// The trajectory file (DESIGN.md 6): one safetensors file with tensors
// q/s{step}/l{layer}, k/..., v/... of shape [B, N, H, D] and string metadata.
// open_trajectory() validates the whole file up front, so consumers can trust
// TrajectoryInfo and only pay for the tensors they load.
#include <cstdlib>
#include <map>
#include <set>

#include "io/safetensors.hpp"
#include "moddit/error.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace {

constexpr const char* kKinds[3] = {"q", "k", "v"};

std::string tensor_name(int kind, int step, int layer) {
  return std::string(kKinds[kind]) + "/s" + std::to_string(step) + "/l" + std::to_string(layer);
}

// Strict decimal parse of a non-negative int (no sign, no spaces, no overflow).
bool parse_nonneg(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 12) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

// "q/s12/l3" -> kind 0, step 12, layer 3. Returns false for any other name.
bool parse_tensor_name(const std::string& name, int& kind, int& step, int& layer) {
  if (name.size() < 7 || name[1] != '/' || name[2] != 's') return false;
  const char k = name[0];
  kind = k == 'q' ? 0 : k == 'k' ? 1 : k == 'v' ? 2 : -1;
  if (kind < 0) return false;
  const size_t slash = name.find("/l", 3);
  if (slash == std::string::npos) return false;
  const std::string ss = name.substr(3, slash - 3), ls = name.substr(slash + 2);
  // Canonical decimal only ("s01" would never be found by load()).
  if ((ss.size() > 1 && ss[0] == '0') || (ls.size() > 1 && ls[0] == '0')) return false;
  int64_t s, l;
  if (!parse_nonneg(ss, s) || !parse_nonneg(ls, l)) return false;
  if (s > (1 << 30) || l > (1 << 30)) return false;
  step = static_cast<int>(s);
  layer = static_cast<int>(l);
  return true;
}

class TrajectoryFile final : public TrajectorySource {
 public:
  explicit TrajectoryFile(std::unique_ptr<SafetensorsReader> reader) : owned_(std::move(reader)),
                                                                       reader_(*owned_) {
    validate();
  }

  const TrajectoryInfo& info() const override { return info_; }

  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    HostTensor* out[3] = {&q, &k, &v};
    for (int kind = 0; kind < 3; ++kind) {
      const std::string name = tensor_name(kind, step, layer);
      const SafetensorsEntry* e = reader_.find(name);
      MODDIT_CHECK(e != nullptr, reader_.path(), ": trajectory has no step ", step, " layer ",
                   layer, " (tensor '", name, "' absent)");
      HostTensor& t = *out[kind];
      const bool reuse = t.dtype == dtype_ && t.shape[0] == shape_[0] &&
                         t.shape[1] == shape_[1] && t.shape[2] == shape_[2] &&
                         t.shape[3] == shape_[3] && t.bytes.size() == e->nbytes();
      if (!reuse) t = HostTensor(dtype_, shape_[0], shape_[1], shape_[2], shape_[3]);
      reader_.read_raw(*e, t.bytes.data(), t.bytes.size());
      // Refused when read: a NaN or Inf would be scored (a NaN norm compares as 0).
      check_finite(t, reader_.path() + ": tensor '" + name + "'");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(reader_.path() + ": not a valid moddit trajectory: " + problem);
  }

  const std::string& meta(const std::string& key) const {
    const auto it = reader_.metadata().find(key);
    if (it == reader_.metadata().end()) fail("metadata key '" + key + "' is missing");
    return it->second;
  }
  int64_t meta_int(const std::string& key, int64_t min_value) const {
    const std::string& s = meta(key);
    int64_t v;
    if (!parse_nonneg(s, v))
      fail("metadata key '" + key + "' = '" + s + "' is not a non-negative integer");
    if (v < min_value)
      fail("metadata key '" + key + "' = " + s + " must be >= " + std::to_string(min_value));
    return v;
  }

  void validate() {
    const auto& md = reader_.metadata();
    const auto tag = md.find("moddit.trajectory");
    if (tag == md.end()) fail("metadata key 'moddit.trajectory' is missing");
    if (tag->second != "1")
      fail("unsupported moddit.trajectory version '" + tag->second + "' (expected '1')");

    TokenLayout& L = info_.tokens;
    L.frames = meta_int("frames", 1);
    L.height = meta_int("height", 1);
    L.width = meta_int("width", 1);
    L.text_tokens = meta_int("text_tokens", 0);
    L.text_valid = meta_int("text_valid", 0);
    try {
      L.text_position = text_position_from_string(meta("text_position"));
    } catch (const Error& e) {
      fail(std::string("metadata key 'text_position': ") + e.what());
    }
    if (L.text_valid > L.text_tokens)
      fail("text_valid = " + std::to_string(L.text_valid) + " exceeds text_tokens = " +
           std::to_string(L.text_tokens));
    try {
      L.validate();
    } catch (const Error& e) {
      fail(e.what());
    }
    const int64_t T = meta_int("num_steps", 1);
    if (T > (1 << 30)) fail("num_steps = " + std::to_string(T) + " is too large");
    info_.num_steps = static_cast<int>(T);
    const auto src = md.find("source");
    info_.source = src == md.end() ? std::string() : src->second;

    // (step -> layer -> which of q/k/v are present), checking every tensor.
    std::map<int, std::map<int, int>> present;
    bool have_shape = false;
    for (const SafetensorsEntry& e : reader_.tensors()) {
      int kind, step, layer;
      if (!parse_tensor_name(e.name, kind, step, layer)) {
        // Foreign tensors are tolerated, but a q/, k/ or v/ name we cannot parse is a typo.
        if (e.name.size() >= 2 && e.name[1] == '/' &&
            (e.name[0] == 'q' || e.name[0] == 'k' || e.name[0] == 'v'))
          fail("tensor name '" + e.name + "' is not of the form " + e.name.substr(0, 1) +
               "/s{step}/l{layer}");
        continue;
      }
      if (!e.supported)
        fail("tensor '" + e.name + "' has dtype " + e.dtype_name + " (expected F32, BF16 or F16)");
      if (e.shape.size() != 4)
        fail("tensor '" + e.name + "' has " + std::to_string(e.shape.size()) +
             " dimensions (expected 4: [B, N, H, D])");
      for (int a = 0; a < 4; ++a)
        if (e.shape[a] <= 0) fail("tensor '" + e.name + "' has an empty dimension");
      if (e.shape[1] != L.total_tokens())
        fail("tensor '" + e.name + "' has N = " + std::to_string(e.shape[1]) +
             " but text_tokens + frames*height*width = " + std::to_string(L.total_tokens()));
      if (step >= info_.num_steps)
        fail("tensor '" + e.name + "' is for step " + std::to_string(step) +
             " but num_steps = " + std::to_string(info_.num_steps));
      if (!have_shape) {
        for (int a = 0; a < 4; ++a) shape_[a] = e.shape[a];
        dtype_ = e.dtype;
        have_shape = true;
      } else {
        for (int a = 0; a < 4; ++a)
          if (e.shape[a] != shape_[a])
            fail("tensor '" + e.name + "' has shape [" + std::to_string(e.shape[0]) + ", " +
                 std::to_string(e.shape[1]) + ", " + std::to_string(e.shape[2]) + ", " +
                 std::to_string(e.shape[3]) + "], different from the other tensors' [" +
                 std::to_string(shape_[0]) + ", " + std::to_string(shape_[1]) + ", " +
                 std::to_string(shape_[2]) + ", " + std::to_string(shape_[3]) + "]");
        if (e.dtype != dtype_)
          fail("tensor '" + e.name + "' has dtype " + e.dtype_name +
               ", different from the other tensors' " + safetensors_dtype_name(dtype_));
      }
      present[step][layer] |= 1 << kind;
    }
    if (present.empty()) fail("it holds no q/s{step}/l{layer} tensors");

    for (const auto& [step, layers] : present) {
      for (const auto& [layer, mask] : layers)
        for (int kind = 0; kind < 3; ++kind)
          if (!(mask & (1 << kind)))
            fail("tensor '" + tensor_name(kind, step, layer) + "' is missing (every recorded "
                 "(step, layer) needs q, k and v)");
      std::vector<int> ls;
      for (const auto& kv : layers) ls.push_back(kv.first);
      if (info_.steps.empty()) {
        info_.layers = ls;
      } else if (ls != info_.layers) {
        fail("step " + std::to_string(step) + " records layers different from step " +
             std::to_string(info_.steps.front()) + " (every step must record the same layers)");
      }
      info_.steps.push_back(step);
    }
    info_.batch = static_cast<int>(shape_[0]);
    info_.heads = static_cast<int>(shape_[2]);
    info_.head_dim = static_cast<int>(shape_[3]);
  }

  std::unique_ptr<SafetensorsReader> owned_;
  SafetensorsReader& reader_;
  TrajectoryInfo info_;
  int64_t shape_[4] = {0, 0, 0, 0};
  DType dtype_ = DType::F32;
};

}  // namespace

std::unique_ptr<TrajectorySource> open_trajectory(const std::string& path) {
  return std::make_unique<TrajectoryFile>(std::make_unique<SafetensorsReader>(path));
}

std::unique_ptr<TrajectorySource> open_trajectory_bytes(std::shared_ptr<const std::string> bytes,
                                                        const std::string& name) {
  return std::make_unique<TrajectoryFile>(std::make_unique<SafetensorsReader>(std::move(bytes), name));
}

void write_trajectory(TrajectorySource& source, const std::string& path, DType dtype,
                      void (*progress)(int done, int total)) {
  check_output_file(path);  // before the first tensor is generated or read
  const TrajectoryInfo& info = source.info();
  const TokenLayout& L = info.tokens;
  L.validate();
  MODDIT_CHECK(!info.steps.empty() && !info.layers.empty(), "write_trajectory '", path,
               "': the source has no steps or no layers");
  MODDIT_CHECK(info.batch > 0 && info.heads > 0 && info.head_dim > 0, "write_trajectory '", path,
               "': source info has batch ", info.batch, ", heads ", info.heads, ", head_dim ",
               info.head_dim);
  for (int s : info.steps)
    MODDIT_CHECK(s >= 0 && s < info.num_steps, "write_trajectory '", path, "': step ", s,
                 " outside [0, num_steps=", info.num_steps, ")");

  std::map<std::string, std::string> md = {
      {"moddit.trajectory", "1"},
      {"frames", std::to_string(L.frames)},
      {"height", std::to_string(L.height)},
      {"width", std::to_string(L.width)},
      {"text_tokens", std::to_string(L.text_tokens)},
      {"text_valid", std::to_string(L.text_valid)},
      {"text_position", to_string(L.text_position)},
      {"num_steps", std::to_string(info.num_steps)},
      {"source", info.source},
  };
  const std::vector<int64_t> shape = {info.batch, L.total_tokens(), info.heads, info.head_dim};
  SafetensorsWriter w(path, md);
  for (int s : info.steps)
    for (int l : info.layers)
      for (int kind = 0; kind < 3; ++kind) w.declare(tensor_name(kind, s, l), dtype, shape);

  const int total = static_cast<int>(info.steps.size() * info.layers.size());
  int done = 0;
  HostTensor q, k, v;
  for (int s : info.steps)
    for (int l : info.layers) {
      source.load(s, l, q, k, v);
      const HostTensor* t[3] = {&q, &k, &v};
      for (int kind = 0; kind < 3; ++kind) {
        for (int a = 0; a < 4; ++a)
          MODDIT_CHECK(t[kind]->shape[a] == shape[static_cast<size_t>(a)], "write_trajectory '",
                       path, "': source returned ", kKinds[kind], " for step ", s, " layer ", l,
                       " with a shape that differs from its info [B, N, H, D]");
        if (t[kind]->dtype == dtype) {
          w.write(tensor_name(kind, s, l), t[kind]->bytes.data(), t[kind]->bytes.size());
        } else {
          const HostTensor c = t[kind]->to(dtype);
          w.write(tensor_name(kind, s, l), c.bytes.data(), c.bytes.size());
        }
      }
      ++done;
      if (progress) progress(done, total);
    }
  w.finish();
}

}  // namespace moddit
