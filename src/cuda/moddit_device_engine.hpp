#pragma once
// The MOD-DiT step on the GPU (moddit_device_engine.cpp). The CUDA backend hands it
// out as its Backend::make_moddit_engine (core/moddit_engine.hpp).
#include <memory>

#include "core/moddit_engine.hpp"

namespace moddit::cuda {

std::unique_ptr<core::ModditEngine> make_moddit_device_engine(const ModditConfig& config,
                                                              int num_heads, Backend& backend,
                                                              bool group_rows_by_head);

}  // namespace moddit::cuda
