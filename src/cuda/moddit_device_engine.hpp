#pragma once
// The MOD-DiT step on the GPU (moddit_device_engine.cpp). The CUDA backend
// registers this factory with core (core/moddit_engine.hpp) when it is created.
#include <memory>

#include "core/moddit_engine.hpp"

namespace moddit::cuda {

std::unique_ptr<core::ModditEngine> make_moddit_device_engine(const ModditConfig& config,
                                                              int num_heads, Backend& backend);

}  // namespace moddit::cuda
