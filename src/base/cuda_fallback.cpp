// When moddit is built without CUDA, the CUDA backend entry points exist and say so.
#ifndef MODDIT_WITH_CUDA
#include "moddit/backend.hpp"
#include "moddit/error.hpp"

namespace moddit {
std::shared_ptr<Backend> make_cuda_backend(int, const CudaOptions&) {
  throw Error("the CUDA backend is not available: moddit was built without CUDA (nvcc not found)");
}
bool cuda_available() { return false; }
}  // namespace moddit
#endif
