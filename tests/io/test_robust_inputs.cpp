// Bad input files (issue 13): a safetensors data section not covered exactly, token
// counts that overflow, NaN/Inf in trajectory tensors, non-regular input files
// (a FIFO must be refused at once, not block), and the config readers' numbers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"
#include "moddit/config.hpp"
#include "expect_error.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"
#include "moddit/sparse_vdit.hpp"
#include "moddit/trajectory.hpp"

using namespace moddit;
using moddit::test::ScratchDir;

namespace {

using moddit::test::expect_error;

std::string header_of(const std::string& tensors_json) { return "{" + tensors_json + "}"; }

// ---- the safetensors data section ------------------------------------------

TEST(RobustSafetensors, DataSectionMustBeCoveredExactly) {
  ScratchDir dir;
  const std::string a = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  const std::string b = "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}";
  // Exactly covered: accepted.
  test::write_raw(dir.file("ok.st"), test::raw_safetensors(header_of(a + "," + b), 12));
  EXPECT_NO_THROW(SafetensorsReader(dir.file("ok.st")));
  // Trailing bytes after the last tensor.
  test::write_raw(dir.file("trail.st"), test::raw_safetensors(header_of(a + "," + b), 13));
  expect_error([&] { SafetensorsReader r(dir.file("trail.st")); }, "trailing");
  // A gap between two tensors.
  const std::string b_gap = "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}";
  test::write_raw(dir.file("gap.st"), test::raw_safetensors(header_of(a + "," + b_gap), 16));
  expect_error([&] { SafetensorsReader r(dir.file("gap.st")); }, "gap");
  // Data not starting at offset 0.
  const std::string late = "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}";
  test::write_raw(dir.file("late.st"), test::raw_safetensors(header_of(late), 8));
  expect_error([&] { SafetensorsReader r(dir.file("late.st")); }, "gap");
}

TEST(RobustSafetensors, HeaderOneByteShortIsRefused) {
  // A file written by moddit, its header length made one byte short: every
  // tensor would be read one byte off.
  ScratchDir dir;
  std::vector<float> v(64, 1.5f);
  write_safetensors(dir.file("t.st"), {{"x", DType::F32, {64}, v.data()}});
  std::vector<uint8_t> bytes = test::read_all(dir.file("t.st"));
  uint64_t L = 0;
  for (int i = 7; i >= 0; --i) L = (L << 8) | bytes[size_t(i)];
  // The header is padded with spaces, so L - 1 still parses as JSON.
  ASSERT_EQ(bytes[8 + L - 1], ' ');
  --L;
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = static_cast<uint8_t>(L >> (8 * i));
  test::write_raw(dir.file("short.st"), bytes);
  expect_error([&] { SafetensorsReader r(dir.file("short.st")); }, "short.st");
}

// ---- token-count overflow ------------------------------------------------------

// frames x height x width = 2^64 + 256, which wraps to 256 in 64 bits.
constexpr int64_t kF = 65792, kH = 5153, kW = 54410972897;

TEST(RobustOverflow, TokenLayoutRefusesAWrappingProduct) {
  TokenLayout t;
  t.frames = kF;
  t.height = kH;
  t.width = kW;
  expect_error([&] { t.validate(); }, "overflow");
  expect_error([&] { make_block_grid(t, 128); }, "overflow");
}

TEST(RobustOverflow, TrajectoryWithWrappingTokenCountIsRefused) {
  ScratchDir dir;
  const int64_t N = 256, H = 1, D = 16;
  std::vector<float> x(size_t(N * H * D), 0.25f);
  std::map<std::string, std::string> md = {
      {"moddit.trajectory", "1"}, {"frames", std::to_string(kF)}, {"height", std::to_string(kH)},
      {"width", std::to_string(kW)}, {"text_tokens", "0"},       {"text_valid", "0"},
      {"text_position", "none"},  {"num_steps", "1"}};
  write_safetensors(dir.file("wrap.safetensors"),
                    {{"q/s0/l0", DType::F32, {1, N, H, D}, x.data()},
                     {"k/s0/l0", DType::F32, {1, N, H, D}, x.data()},
                     {"v/s0/l0", DType::F32, {1, N, H, D}, x.data()}},
                    md);
  expect_error([&] { open_trajectory(dir.file("wrap.safetensors")); }, "wrap.safetensors");
  expect_error([&] { open_trajectory(dir.file("wrap.safetensors")); }, "overflow");
}

TEST(RobustOverflow, SizeProductsAreCheckedBeforeAllocating) {
  expect_error([] { BlockMask m(1 << 20, 1 << 16, 1 << 20, 1 << 20); }, "block mask");
  expect_error([] { HostTensor t(DType::F32, 1 << 20, int64_t(1) << 31, 1 << 16, 1 << 16); },
               "HostTensor");
  BlockLayout l;
  l.batch = l.heads = l.num_q_blocks = l.num_k_blocks = std::numeric_limits<int>::max();
  l.row_ptr = {0};
  expect_error([&] { l.validate(); }, "block layout");
}

// ---- NaN / Inf in trajectory tensors --------------------------------------------

void write_small_trajectory(const std::string& path, float poison, int poison_kind) {
  const int64_t N = 64, H = 2, D = 16;
  std::vector<float> t[3];
  std::mt19937 rng(7);
  for (auto& x : t) x = test::random_floats(size_t(N * H * D), rng);
  t[poison_kind][77] = poison;
  std::map<std::string, std::string> md = {
      {"moddit.trajectory", "1"}, {"frames", "2"},     {"height", "4"},
      {"width", "8"},             {"text_tokens", "0"}, {"text_valid", "0"},
      {"text_position", "none"},  {"num_steps", "4"}};
  std::vector<SafetensorsTensor> ts;
  for (int s = 0; s < 4; ++s) {
    const char* names[3] = {"q", "k", "v"};
    for (int kind = 0; kind < 3; ++kind)
      ts.push_back({std::string(names[kind]) + "/s" + std::to_string(s) + "/l0", DType::F32,
                    {1, N, H, D}, t[kind].data()});
  }
  write_safetensors(path, ts, md);
}

TEST(RobustNonFinite, TrajectoryTensorsWithNanOrInfAreRefusedWhenRead) {
  ScratchDir dir;
  int kind = 0;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    const std::string p = dir.file("bad" + std::to_string(kind) + ".safetensors");
    write_small_trajectory(p, bad, kind);
    auto src = open_trajectory(p);
    HostTensor q, k, v;
    const char* names[3] = {"q/s0/l0", "k/s0/l0", "v/s0/l0"};
    expect_error([&] { src->load(0, 0, q, k, v); }, names[kind]);
    expect_error([&] { src->load(0, 0, q, k, v); }, "non-finite");
    ++kind;
  }
}

// A source that hands out NaN (as a Python-made source could): never scored.
class NanSource final : public TrajectorySource {
 public:
  NanSource() {
    SyntheticSpec s;
    s.frames = 2;
    s.height = 4;
    s.width = 8;
    s.num_steps = 6;
    s.layers = 1;
    s.heads = 2;
    s.head_dim = 16;
    inner_ = make_synthetic(s);
  }
  const TrajectoryInfo& info() const override { return inner_->info(); }
  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    inner_->load(step, layer, q, k, v);
    if (step >= 4) v.f32()[5] = std::numeric_limits<float>::quiet_NaN();
  }

 private:
  std::unique_ptr<TrajectorySource> inner_;
};

TEST(RobustNonFinite, EvaluationRefusesNanInputsInsteadOfScoringThem) {
  NanSource src;
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 2;
  s.config.interval = 2;
  s.policies = parse_policy_list("dense,moddit,oracle", s.config, 0.5);
  s.threads = 1;
  expect_error([&] { run_evaluation(src, s); }, "non-finite");
}

// ---- non-regular input files ----------------------------------------------------

// Runs fn with a FIFO at `path`. A reader that blocks in open() on it is released
// after 20 s by a writer end opened here, so a regression fails instead of hanging.
void with_fifo(const std::string& path, const std::function<void()>& fn, bool& had_to_unblock) {
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0) << std::strerror(errno);
  std::atomic<bool> done{false};
  had_to_unblock = false;
  std::thread watchdog([&] {
    for (int i = 0; i < 200 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // Release the reader as often as it blocks again (it may reopen the file).
    while (!done) {
      const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) {
        had_to_unblock = true;
        ::close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  fn();
  done = true;
  watchdog.join();
}

TEST(RobustInputs, FifoInputsAreRefusedWithoutBlocking) {
  ScratchDir dir;
  const std::vector<std::pair<std::string, std::function<void(const std::string&)>>> readers = {
      {"trajectory", [](const std::string& p) { open_trajectory(p); }},
      {"moddit config", [](const std::string& p) { load_moddit_config(p); }},
      {"vdit config", [](const std::string& p) { load_vdit_config(p); }},
      {"inspect", [](const std::string& p) { inspect_file(p); }},
      {"inspect json", [](const std::string& p) { inspect_file(p); }},
  };
  int i = 0;
  for (const auto& [what, read] : readers) {
    const std::string p = dir.file("fifo" + std::to_string(i++) + (what == "inspect json" ? ".json" : ""));
    bool unblocked = false;
    with_fifo(p, [&] { expect_error([&] { read(p); }, "not a regular file"); }, unblocked);
    EXPECT_FALSE(unblocked) << what << ": the reader blocked on a FIFO";
  }
  // A directory is refused the same way.
  expect_error([&] { load_moddit_config(dir.path()); }, "not a regular file");
}

// ---- the config readers' numbers ------------------------------------------------

TEST(RobustConfigNumbers, ModditConfigRefusesWrappingIntegers) {
  expect_error([] { moddit_config_from_json("{\"top_k\": 18446744073709551615}"); }, "top_k");
  expect_error([] { moddit_config_from_json("{\"interval\": 4294967297}"); }, "interval");
  expect_error([] { moddit_config_from_json("{\"interval\": 1.9}"); }, "interval");
  expect_error([] { moddit_config_from_json("{\"eta\": \"0.1\"}"); }, "eta");
  EXPECT_EQ(moddit_config_from_json("{\"interval\": 7}").interval, 7);
}

TEST(RobustConfigNumbers, VditConfigRefusesWrappingAndFractionalIntegers) {
  VditConfig c;
  c.shape.num_layers = 2;
  c.shape.num_heads = 2;
  c.shape.head_dim = 64;
  c.shape.num_steps = 10;
  c.shape.block_size = 64;
  c.shape.tokens.frames = 4;
  c.shape.tokens.height = 8;
  c.shape.tokens.width = 8;
  c.steps = {3};
  VditHeadChoice d;
  d.mode = VditMode::Diagonal;
  d.window = 1;
  VditHeadChoice s;
  s.mode = VditMode::VerticalStripe;
  s.stripes = {0, 2};
  c.choices = {{{d, s}, {d, d}}};
  const nlohmann::json good = nlohmann::json::parse(vdit_config_to_json(c));
  EXPECT_NO_THROW(vdit_config_from_json(good.dump()));
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    return j.dump();
  };
  const auto head = [](nlohmann::json& j, int h) -> nlohmann::json& { return j["steps"][0]["layers"][0][h]; };
  expect_error([&] { vdit_config_from_json(with([&](auto& j) { head(j, 1)["stripes"] = {int64_t(1) << 40}; })); },
               "stripes");
  expect_error([&] { vdit_config_from_json(with([&](auto& j) { head(j, 0)["window"] = (int64_t(1) << 32) + 1; })); },
               "window");
  expect_error([&] { vdit_config_from_json(with([&](auto& j) { head(j, 0)["window"] = 1.9; })); },
               "window");
  expect_error([&] { vdit_config_from_json(with([](auto& j) { j["model"]["num_layers"] = 2.9; })); },
               "num_layers");
  expect_error([&] { vdit_config_from_json(with([](auto& j) { j["tokens"]["width"] = uint64_t(1) << 63; })); },
               "width");
  expect_error([&] { vdit_config_from_json(with([](auto& j) { j["tokens"]["frames"] = kF; j["tokens"]["height"] = kH; j["tokens"]["width"] = kW; })); },
               "tokens.width");
  expect_error([&] { vdit_config_from_json(with([](auto& j) { j["search"]["lambda"] = "1"; })); },
               "lambda");
}

}  // namespace
