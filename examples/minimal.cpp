// MOD-DiT inside a model's denoising loop, on the CPU reference backend.
#include <moddit/backend.hpp>
#include <moddit/host_tensor.hpp>
#include <moddit/moddit_policy.hpp>
#include <moddit/session.hpp>

#include <cstdio>
#include <random>

int main() {
  // A small video: 4 latent frames of 8x12 tokens, 20 text tokens (16 real) before it.
  moddit::TokenLayout tokens;
  tokens.frames = 4;
  tokens.height = 8;
  tokens.width = 12;
  tokens.text_tokens = 20;
  tokens.text_valid = 16;
  tokens.text_position = moddit::TextPosition::Before;

  moddit::SessionOptions opt;
  opt.num_steps = 20;
  opt.num_layers = 2;
  opt.num_heads = 4;
  opt.head_dim = 64;
  opt.block_size = 64;

  moddit::ModditConfig cfg;  // every key documented in docs/CONFIG.md
  cfg.block_size = 64;
  cfg.warmup_steps = 6;
  cfg.interval = 5;
  cfg.target_density = 0.3;

  moddit::Session session(tokens, opt, moddit::make_cpu_backend(),
                          std::make_shared<moddit::ModditPolicy>(cfg, opt.num_layers, opt.num_heads));

  const int64_t N = tokens.total_tokens();
  moddit::HostTensor q(moddit::DType::F32, 1, N, opt.num_heads, opt.head_dim), k = q, v = q, out = q;
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  for (int step = 0; step < opt.num_steps; ++step) {
    session.begin_step(step);
    for (int layer = 0; layer < opt.num_layers; ++layer) {
      for (auto* t : {&q, &k, &v})  // stand-in for the model's projections
        for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = normal(rng);
      session.attention(layer, q.view(), k.view(), v.view(), out.view());
    }
  }
  for (const auto& call : session.history())
    if (call.layer == 0)
      std::printf("step %2d: %-7s density %.2f\n", call.step, moddit::to_string(call.kind), call.density);
  return 0;
}
