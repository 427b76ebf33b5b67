#pragma once
// Holds a CUDA stream back until the test lets it go: hold() queues a host
// callback that waits for open(). A test checks that host calls return while the
// stream is still busy (they queue work and wait for nothing); with the gate,
// that check depends on nothing but those calls, not on how fast a loaded
// machine runs them (a sleeping callback made it a timed test). The callback
// gives up after 60 s, so a call that wrongly waits for the device ends with the
// stream idle (the check fails) instead of a deadlock.
#if MODDIT_WITH_CUDA
#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace moddit::gputest {

class StreamGate {
 public:
  StreamGate() = default;
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  // The callback must not outlive the gate: let it go and wait for the stream.
  ~StreamGate() {
    open();
    if (held_) cudaStreamSynchronize(stream_);
  }

  // Queues the waiting callback on `stream`; false if CUDA refused it.
  bool hold(cudaStream_t stream) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = false;
    }
    stream_ = stream;
    held_ = true;
    return cudaLaunchHostFunc(stream, &StreamGate::wait, this) == cudaSuccess;
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  static void CUDART_CB wait(void* self) {
    auto* gate = static_cast<StreamGate*>(self);
    std::unique_lock<std::mutex> lock(gate->mutex_);
    gate->cv_.wait_for(lock, std::chrono::seconds(60), [gate] { return gate->open_; });
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = true;
  bool held_ = false;
  cudaStream_t stream_ = nullptr;
};

}  // namespace moddit::gputest
#endif  // MODDIT_WITH_CUDA
