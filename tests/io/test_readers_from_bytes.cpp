// The readers as plain functions of bytes (what the CI fuzzers call): the
// safetensors header parser, a trajectory from bytes in memory, and the report
// reader on text. Their errors are moddit::Error naming the given name.
#include <gtest/gtest.h>

#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"
#include "expect_error.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"
#include "moddit/trajectory.hpp"

using namespace moddit;

namespace {

using moddit::test::expect_error;

std::string header_of(const std::string& tensors_json) { return "{" + tensors_json + "}"; }

TEST(ReadersFromBytes, HeaderParsesFromBytes) {
  // The header parser is a plain function of the bytes (fuzzed in CI).
  const std::string h = header_of(
      "\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}");
  const SafetensorsHeader parsed = parse_safetensors_header(h, 6, "mem");
  ASSERT_EQ(parsed.tensors.size(), 1u);
  EXPECT_EQ(parsed.tensors[0].name, "a");
  EXPECT_EQ(parsed.metadata.at("k"), "v");
  expect_error([&] { parse_safetensors_header(h, 7, "mem"); }, "trailing");
  expect_error([&] { parse_safetensors_header("[1]", 0, "mem"); }, "mem");
}

TEST(ReadersFromBytes, TrajectoryOpensFromBytes) {
  test::ScratchDir dir;
  SyntheticSpec spec;
  spec.frames = 2;
  spec.height = 4;
  spec.width = 8;
  spec.num_steps = 3;
  spec.layers = 1;
  spec.heads = 1;
  spec.head_dim = 16;
  auto src = make_synthetic(spec);
  write_trajectory(*src, dir.file("t.safetensors"), DType::BF16);
  const std::vector<uint8_t> raw = test::read_all(dir.file("t.safetensors"));
  auto bytes = std::make_shared<const std::string>(raw.begin(), raw.end());
  auto mem = open_trajectory_bytes(bytes, "in-memory");
  EXPECT_EQ(mem->info().steps, src->info().steps);
  HostTensor q, k, v;
  mem->load(2, 0, q, k, v);
  EXPECT_EQ(q.shape[1], 64);
  auto cut = std::make_shared<const std::string>(raw.begin(), raw.begin() + long(raw.size() / 2));
  expect_error([&] { open_trajectory_bytes(cut, "in-memory"); }, "in-memory");
}

TEST(ReadersFromBytes, ReportReaderRefusesValuesOfTheWrongType) {
  EXPECT_NE(inspect_report_text(R"({"moddit_report": 1, "policies": [{"label": "x", "recall": 0.5}]})", "r")
                .find("0.5000"),
            std::string::npos);
  expect_error([] { inspect_report_text(R"({"moddit_report": 1, "policies": [], "settings": {"trajectory": 5}})", "r.json"); },
               "r.json");
  expect_error([] { inspect_report_text(R"({"moddit_report": 1, "policies": [{"label": 7}]})", "r.json"); },
               "not a moddit report");
  expect_error([] { inspect_report_text("{", "r.json"); }, "not valid JSON");
}

}  // namespace
