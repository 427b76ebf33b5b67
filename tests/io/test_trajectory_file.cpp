#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "moddit/error.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace {

using test::ScratchDir;

// An in-memory trajectory with random contents and arbitrary step/layer subsets.
class RandomTrajectory final : public TrajectorySource {
 public:
  RandomTrajectory(TokenLayout layout, int num_steps, std::vector<int> steps,
                   std::vector<int> layers, int B, int H, int D, uint32_t seed) {
    info_.tokens = layout;
    info_.num_steps = num_steps;
    info_.steps = std::move(steps);
    info_.layers = std::move(layers);
    info_.batch = B;
    info_.heads = H;
    info_.head_dim = D;
    info_.source = "test: random trajectory";
    std::mt19937 rng(seed);
    for (int s : info_.steps)
      for (int l : info_.layers)
        for (int kind = 0; kind < 3; ++kind) {
          HostTensor t(DType::F32, B, layout.total_tokens(), H, D);
          const auto v = test::random_floats(static_cast<size_t>(t.numel()), rng);
          std::memcpy(t.f32(), v.data(), v.size() * 4);
          data_[{s, l, kind}] = std::move(t);
        }
  }
  const TrajectoryInfo& info() const override { return info_; }
  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    MODDIT_CHECK(data_.count({step, layer, 0}), "absent");
    q = data_.at({step, layer, 0});
    k = data_.at({step, layer, 1});
    v = data_.at({step, layer, 2});
  }

 private:
  TrajectoryInfo info_;
  std::map<std::tuple<int, int, int>, HostTensor> data_;
};

TokenLayout layout(int64_t F, int64_t h, int64_t w, int64_t T, int64_t valid, TextPosition pos) {
  TokenLayout L;
  L.frames = F;
  L.height = h;
  L.width = w;
  L.text_tokens = T;
  L.text_valid = valid;
  L.text_position = pos;
  return L;
}

int g_progress_calls = 0, g_progress_last_done = 0, g_progress_total = 0;
void count_progress(int done, int total) {
  ++g_progress_calls;
  g_progress_last_done = done;
  g_progress_total = total;
}

void check_round_trip(const TokenLayout& L, DType dtype, uint32_t seed) {
  ScratchDir dir;
  RandomTrajectory src(L, 10, {0, 3, 7}, {0, 2}, 2, 3, 8, seed);
  const std::string path = dir.file("traj.safetensors");
  g_progress_calls = 0;
  write_trajectory(src, path, dtype, count_progress);
  EXPECT_EQ(g_progress_calls, 6);
  EXPECT_EQ(g_progress_last_done, 6);
  EXPECT_EQ(g_progress_total, 6);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"traj.safetensors"});

  auto t = open_trajectory(path);
  const TrajectoryInfo& a = t->info();
  const TrajectoryInfo& b = src.info();
  EXPECT_EQ(a.tokens.frames, L.frames);
  EXPECT_EQ(a.tokens.height, L.height);
  EXPECT_EQ(a.tokens.width, L.width);
  EXPECT_EQ(a.tokens.text_tokens, L.text_tokens);
  EXPECT_EQ(a.tokens.text_valid, L.text_valid);
  EXPECT_EQ(a.tokens.text_position, L.text_position);
  EXPECT_EQ(a.num_steps, b.num_steps);
  EXPECT_EQ(a.batch, b.batch);
  EXPECT_EQ(a.heads, b.heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.source, b.source);
  HostTensor q0, k0, v0, q1, k1, v1;
  for (int s : b.steps)
    for (int l : b.layers) {
      src.load(s, l, q0, k0, v0);
      t->load(s, l, q1, k1, v1);
      const HostTensor* want[3] = {&q0, &k0, &v0};
      const HostTensor* got[3] = {&q1, &k1, &v1};
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(got[i]->dtype, dtype);
        const HostTensor expect = want[i]->to(dtype);  // the same rounding
        EXPECT_EQ(got[i]->bytes, expect.bytes) << "step " << s << " layer " << l << " tensor " << i;
      }
    }
  EXPECT_THROW(t->load(1, 0, q1, k1, v1), Error);  // step not recorded
  EXPECT_THROW(t->load(0, 1, q1, k1, v1), Error);  // layer not recorded
}

TEST(TrajectoryFile, RoundTripNoText) {
  check_round_trip(layout(3, 2, 5, 0, 0, TextPosition::None), DType::F32, test::test_seed());
}
TEST(TrajectoryFile, RoundTripTextBeforeBf16) {
  check_round_trip(layout(2, 3, 3, 7, 4, TextPosition::Before), DType::BF16, test::test_seed() + 1);
}
TEST(TrajectoryFile, RoundTripTextAfterF16) {
  check_round_trip(layout(2, 2, 4, 5, 5, TextPosition::After), DType::F16, test::test_seed() + 2);
}

// ---- inconsistent files ------------------------------------------------------

struct FileSpec {
  std::map<std::string, std::string> md = {
      {"moddit.trajectory", "1"}, {"frames", "2"},        {"height", "2"},
      {"width", "3"},             {"text_tokens", "4"},   {"text_valid", "3"},
      {"text_position", "before"}, {"num_steps", "5"},    {"source", "handmade"}};
  // name -> (dtype, shape); N = 4 + 2*2*3 = 16
  std::vector<std::tuple<std::string, DType, std::vector<int64_t>>> tensors;
  FileSpec() {
    for (int s : {0, 2})
      for (int l : {0, 1})
        for (const char* kind : {"q", "k", "v"})
          tensors.emplace_back(std::string(kind) + "/s" + std::to_string(s) + "/l" + std::to_string(l),
                               DType::F32, std::vector<int64_t>{1, 16, 2, 4});
  }
  void erase(const std::string& name) {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (std::get<0>(tensors[i]) == name) {
        tensors.erase(tensors.begin() + static_cast<long>(i));
        return;
      }
    ADD_FAILURE() << "no tensor " << name;
  }
  void set_shape(const std::string& name, std::vector<int64_t> shape) {
    for (auto& t : tensors)
      if (std::get<0>(t) == name) std::get<2>(t) = std::move(shape);
  }
  void set_dtype(const std::string& name, DType dt) {
    for (auto& t : tensors)
      if (std::get<0>(t) == name) std::get<1>(t) = dt;
  }
  std::string write(const ScratchDir& dir, const std::string& file) const {
    std::vector<std::vector<uint8_t>> storage;
    std::vector<SafetensorsTensor> ts;
    for (const auto& [name, dt, shape] : tensors) {
      int64_t n = dtype_size(dt);
      for (int64_t d : shape) n *= d;
      storage.emplace_back(static_cast<size_t>(n), uint8_t(1));
      ts.push_back({name, dt, shape, storage.back().data()});
    }
    const std::string path = dir.file(file);
    write_safetensors(path, ts, md);
    return path;
  }
};

void expect_rejected(const std::string& path, const std::string& what) {
  try {
    open_trajectory(path);
    ADD_FAILURE() << "expected rejection containing '" << what << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "message lacks '" << what << "': " << msg;
  }
}

TEST(TrajectoryFile, ValidHandmadeFileOpens) {
  ScratchDir dir;
  auto t = open_trajectory(FileSpec().write(dir, "ok.safetensors"));
  EXPECT_EQ(t->info().steps, (std::vector<int>{0, 2}));
  EXPECT_EQ(t->info().layers, (std::vector<int>{0, 1}));
  EXPECT_EQ(t->info().tokens.total_tokens(), 16);
  EXPECT_EQ(t->info().source, "handmade");
}

TEST(TrajectoryFile, RejectsInconsistentFiles) {
  ScratchDir dir;
  int n = 0;
  auto check = [&](const FileSpec& f, const std::string& what) {
    expect_rejected(f.write(dir, "bad" + std::to_string(n++) + ".safetensors"), what);
  };
  {
    FileSpec f;
    f.md["width"] = "4";  // N would be 4 + 16 = 20
    check(f, "but text_tokens + frames*height*width = 20");
  }
  {
    FileSpec f;
    f.erase("k/s2/l1");
    check(f, "'k/s2/l1' is missing");
  }
  {
    FileSpec f;
    f.erase("v/s0/l0");
    check(f, "'v/s0/l0' is missing");
  }
  {
    FileSpec f;
    for (const char* k : {"q", "k", "v"}) f.erase(std::string(k) + "/s2/l1");
    check(f, "step 2 records layers different");
  }
  {
    FileSpec f;
    f.set_shape("q/s2/l0", {1, 16, 3, 4});
    check(f, "different from the other tensors'");
  }
  {
    FileSpec f;
    f.set_shape("v/s0/l1", {1, 16, 2, 4, 1});
    check(f, "has 5 dimensions");
  }
  {
    FileSpec f;
    f.set_dtype("k/s0/l0", DType::BF16);
    check(f, "dtype BF16, different");
  }
  {
    FileSpec f;
    f.md.erase("frames");
    check(f, "'frames' is missing");
  }
  {
    FileSpec f;
    f.md["height"] = "two";
    check(f, "'height' = 'two' is not a non-negative integer");
  }
  {
    FileSpec f;
    f.md["height"] = "-2";
    check(f, "'height' = '-2'");
  }
  {
    FileSpec f;
    f.md["frames"] = "0";
    check(f, "'frames' = 0 must be >= 1");
  }
  {
    FileSpec f;
    f.md["text_position"] = "middle";
    check(f, "text_position");
  }
  {
    FileSpec f;
    f.md["text_valid"] = "5";
    check(f, "text_valid = 5 exceeds text_tokens = 4");
  }
  {
    FileSpec f;
    f.md["num_steps"] = "2";
    check(f, "is for step 2 but num_steps = 2");
  }
  {
    FileSpec f;
    f.md.erase("moddit.trajectory");
    check(f, "'moddit.trajectory' is missing");
  }
  {
    FileSpec f;
    f.md["moddit.trajectory"] = "2";
    check(f, "unsupported moddit.trajectory version");
  }
  {
    FileSpec f;
    f.tensors.clear();
    check(f, "holds no q/s{step}/l{layer} tensors");
  }
  {
    FileSpec f;
    f.tensors.emplace_back("q/step3/l0", DType::F32, std::vector<int64_t>{1, 16, 2, 4});
    check(f, "'q/step3/l0' is not of the form");
  }
  {
    FileSpec f;
    f.tensors.emplace_back("k/s02/l0", DType::F32, std::vector<int64_t>{1, 16, 2, 4});
    check(f, "'k/s02/l0' is not of the form");
  }
  {
    FileSpec f;
    f.md["text_position"] = "none";  // but text_tokens = 4
    check(f, "text_position is none");
  }
}

TEST(TrajectoryFile, RejectsUnsupportedDtype) {
  ScratchDir dir;
  const std::string path = dir.file("i64.safetensors");
  const std::string header =
      "{\"__metadata__\": {\"moddit.trajectory\": \"1\", \"frames\": \"1\", \"height\": \"1\","
      " \"width\": \"2\", \"text_tokens\": \"0\", \"text_valid\": \"0\", \"text_position\": \"none\","
      " \"num_steps\": \"1\", \"source\": \"x\"},"
      " \"q/s0/l0\": {\"dtype\": \"I64\", \"shape\": [1, 2, 1, 1], \"data_offsets\": [0, 16]},"
      " \"k/s0/l0\": {\"dtype\": \"F32\", \"shape\": [1, 2, 1, 1], \"data_offsets\": [16, 24]},"
      " \"v/s0/l0\": {\"dtype\": \"F32\", \"shape\": [1, 2, 1, 1], \"data_offsets\": [24, 32]}}";
  test::write_raw(path, test::raw_safetensors(header, 32));
  expect_rejected(path, "'q/s0/l0' has dtype I64");
}

TEST(TrajectoryFile, ForeignTensorsAreIgnored) {
  ScratchDir dir;
  FileSpec f;
  f.tensors.emplace_back("timesteps", DType::F32, std::vector<int64_t>{5});
  auto t = open_trajectory(f.write(dir, "extra.safetensors"));
  EXPECT_EQ(t->info().steps.size(), 2u);
}

}  // namespace
}  // namespace moddit
