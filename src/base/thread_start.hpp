#pragma once
// Starting worker threads on a machine that may refuse some (a loaded machine
// returns EAGAIN from pthread_create): every pool in moddit starts its threads
// here, keeps the ones that could be made and runs its work on those, and the
// first refusal in the process is reported once on stderr, naming what could not
// be had. A refused thread is never an error: the caller's thread always works.
#include <functional>
#include <thread>
#include <vector>

namespace moddit {

// Appends up to `count` threads made by make(i), i = 0, 1, ..., to `pool`,
// stopping at the first the system refuses; returns how many were started.
// `who` names the pool in the report ("cpu backend", ...).
int start_threads(std::vector<std::thread>& pool, int count,
                  const std::function<std::thread(int)>& make, const char* who);

}  // namespace moddit
