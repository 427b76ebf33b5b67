#pragma once
// Where ModditPolicy keeps its state and does its per-call work: on the host
// (moddit_host_engine.cpp) or on the backend's GPU (src/cuda/moddit_device_engine.cpp,
// which the CUDA backend hands out through Backend::make_moddit_engine, so that core
// does not link against CUDA). ModditPolicy itself keeps what both share: the call checks, the
// dense layers and the schedule.
#include <cstdint>
#include <memory>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/config.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/policy.hpp"

namespace moddit {
namespace core {

class ModditEngine {
 public:
  virtual ~ModditEngine() = default;
  // A Sparse or Refresh call (kind): every head's mask from its slot's fits
  // (all live before the first fit), as the plan's layout.
  virtual Plan plan_masks(const CallInfo& call, CallKind kind) = 0;
  // After a call that recorded the map: fuse the counts, fit, keep the fit as the
  // slot's newest reference. map_counts is where map_on_device() says.
  virtual void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) = 0;
  virtual bool map_on_device() const = 0;
  virtual Device device() const = 0;

  virtual std::vector<float> fused_map(int layer, int slot, int head) const = 0;
  virtual std::vector<float> fitted_map(int layer, int slot, int head) const = 0;
  virtual std::vector<uint8_t> video_mask(int layer, int slot, int head) const = 0;
  virtual const std::vector<FitRecord>& fits() = 0;
  virtual int64_t state_bytes() const = 0;
};

std::unique_ptr<ModditEngine> make_host_engine(const ModditConfig& config, int num_heads);

}  // namespace core
}  // namespace moddit
