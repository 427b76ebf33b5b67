#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace {

using test::ScratchDir;

// Expects opening `path` to throw a moddit::Error naming the file and containing `what`.
void expect_open_error(const std::string& path, const std::string& what) {
  try {
    SafetensorsReader r(path);
    ADD_FAILURE() << "expected an error containing '" << what << "' for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "message lacks '" << what << "': " << msg;
  }
}

struct Sample {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<float> values;   // as f32 (already representable in dtype)
  std::vector<uint8_t> bytes;  // encoded
};

Sample make_sample(const std::string& name, DType dt, std::vector<int64_t> shape,
                   std::mt19937& rng) {
  Sample s{name, dt, shape, {}, {}};
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  s.values = test::random_floats(static_cast<size_t>(n), rng, 3.f);
  s.bytes.resize(static_cast<size_t>(n * dtype_size(dt)));
  for (int64_t i = 0; i < n; ++i) {
    float& v = s.values[static_cast<size_t>(i)];
    if (dt == DType::F32) {
      std::memcpy(&s.bytes[static_cast<size_t>(4 * i)], &v, 4);
    } else {
      const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      v = dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      std::memcpy(&s.bytes[static_cast<size_t>(2 * i)], &h, 2);
    }
  }
  return s;
}

TEST(Safetensors, RoundTripAllDtypes) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed());
  std::vector<Sample> samples = {
      make_sample("q/s0/l0", DType::F32, {2, 7, 3, 5}, rng),
      make_sample("bf", DType::BF16, {13, 3}, rng),
      make_sample("half", DType::F16, {5}, rng),
      make_sample("scalar", DType::F32, {}, rng),
      make_sample("empty", DType::BF16, {0, 4}, rng),
      make_sample("odd", DType::F16, {3, 1}, rng),  // 6 bytes: the next tensor is unaligned
      make_sample("after_odd", DType::F32, {9}, rng),
  };
  const std::map<std::string, std::string> md = {{"k1", "v1"}, {"moddit.x", "{\"json\": [1]}"}};
  std::vector<SafetensorsTensor> ts;
  for (const auto& s : samples) ts.push_back({s.name, s.dtype, s.shape, s.bytes.data()});
  const std::string path = dir.file("rt.safetensors");
  write_safetensors(path, ts, md);

  SafetensorsReader r(path);
  EXPECT_EQ(r.metadata(), md);
  ASSERT_EQ(r.tensors().size(), samples.size());
  for (const auto& s : samples) {
    const SafetensorsEntry& e = r.at(s.name);
    EXPECT_TRUE(e.supported);
    EXPECT_EQ(e.dtype, s.dtype) << s.name;
    EXPECT_EQ(e.dtype_name, safetensors_dtype_name(s.dtype));
    EXPECT_EQ(e.shape, s.shape) << s.name;
    EXPECT_EQ(r.read_bytes(s.name), s.bytes) << s.name;
    EXPECT_EQ(r.read_f32(s.name), s.values) << s.name;
  }
  EXPECT_EQ(r.find("absent"), nullptr);
  EXPECT_THROW(r.at("absent"), Error);
  // The data section starts 8-byte aligned.
  const auto raw = test::read_all(path);
  uint64_t L = 0;
  for (int i = 7; i >= 0; --i) L = (L << 8) | raw[static_cast<size_t>(i)];
  EXPECT_EQ(L % 8, 0u);
}

TEST(Safetensors, StreamsInChunksAndChecksOrder) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed() + 1);
  const auto a = test::random_floats(1000, rng), b = test::random_floats(10, rng);
  const std::string path = dir.file("chunks.safetensors");
  SafetensorsWriter w(path, {{"m", "x"}});
  w.declare("a", DType::F32, {10, 100});
  w.declare("b", DType::F32, {10});
  EXPECT_THROW(w.declare("a", DType::F32, {1}), Error);  // duplicate name
  EXPECT_THROW(w.write("b", b.data(), 40), Error);       // out of order
  for (int i = 0; i < 10; ++i) w.write("a", a.data() + 100 * i, 400);
  EXPECT_THROW(w.write("b", b.data(), 44), Error);       // too many bytes
  w.write("b", b.data(), 40);
  w.finish();
  SafetensorsReader r(path);
  EXPECT_EQ(r.read_f32("a"), a);
  EXPECT_EQ(r.read_f32("b"), b);
}

TEST(Safetensors, TruncatedFilesFailCleanly) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed() + 2);
  const Sample s1 = make_sample("x", DType::F32, {4, 8}, rng);
  const Sample s2 = make_sample("y", DType::BF16, {16}, rng);
  const std::string full = dir.file("full.safetensors");
  write_safetensors(full, {{s1.name, s1.dtype, s1.shape, s1.bytes.data()},
                           {s2.name, s2.dtype, s2.shape, s2.bytes.data()}});
  const auto bytes = test::read_all(full);
  uint64_t L = 0;
  for (int i = 7; i >= 0; --i) L = (L << 8) | bytes[static_cast<size_t>(i)];
  const size_t header_end = static_cast<size_t>(8 + L);
  const std::vector<size_t> cuts = {0, 1, 7, 8, 9, header_end / 2, header_end - 1, header_end,
                                    header_end + 1, header_end + 128, bytes.size() - 1};
  for (size_t cut : cuts) {
    ASSERT_LT(cut, bytes.size());
    const std::string path = dir.file("cut" + std::to_string(cut) + ".safetensors");
    test::write_raw(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
    expect_open_error(path, "");  // every message names the file
  }
  expect_open_error(dir.file("cut0.safetensors"), "too short");
  expect_open_error(dir.file("cut9.safetensors"), "beyond the end of the file");
  expect_open_error(dir.file("cut" + std::to_string(bytes.size() - 1) + ".safetensors"),
                    "beyond the data section");
  expect_open_error(dir.file("does_not_exist.safetensors"), "cannot open");
}

TEST(Safetensors, CorruptHeadersFailCleanly) {
  ScratchDir dir;
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
    uint64_t len_override = 0;
  };
  const std::vector<Case> cases = {
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8, "not valid JSON"},
      {"[1, 2, 3]", 0, "not a JSON object"},
      {"{\"a\": 5}", 0, "is not a JSON object"},
      {"{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "no string 'dtype'"},
      {"{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, "no array 'shape'"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "data_offsets"},
      {"{\"a\": {\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "unknown dtype 'F33'"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "negative"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8, "not an integer"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, "reversed"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 8, "beyond the data section"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "needs 12 bytes"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
       " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, "overlap"},
      {"{\"__metadata__\": {\"k\": 3}}", 0, "not a string"},
      {"{\"__metadata__\": [1]}", 0, "__metadata__ is not an object"},
      {"{}", 0, "implausibly large", 1ull << 40},
      {"{}", 0, "too small", 1},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string path = dir.file("bad" + std::to_string(i++) + ".safetensors");
    test::write_raw(path, test::raw_safetensors(c.header, c.data, c.len_override));
    expect_open_error(path, c.expect);
  }
}

TEST(Safetensors, OtherStandardDtypesOpenButDoNotRead) {
  ScratchDir dir;
  const std::string path = dir.file("i64.safetensors");
  test::write_raw(path, test::raw_safetensors(
                            "{\"ids\": {\"dtype\": \"I64\", \"shape\": [3], \"data_offsets\": [0, 24]},"
                            " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [24, 28]}}",
                            28));
  SafetensorsReader r(path);
  EXPECT_FALSE(r.at("ids").supported);
  EXPECT_TRUE(r.at("w").supported);
  try {
    r.read_bytes("ids");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("I64"), std::string::npos) << e.what();
  }
  EXPECT_EQ(r.read_f32("w").size(), 1u);
}

}  // namespace
}  // namespace moddit
