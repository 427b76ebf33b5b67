"""Attention processors that compute Q/K/V exactly like the diffusers processors
they replace (diffusers 0.35+: projections, QK norms, rotary embeddings, text
concatenation order), then hand the attention itself to moddit's controller.

Each mirrors one diffusers processor line for line up to the attention call;
keep them in sync with diffusers when it changes (the tests compare outputs
against the original processors with a dense policy).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from .. import _handles
from .. import _torch_ops

try:
    from diffusers.models.attention_dispatch import dispatch_attention_fn
except ImportError:  # older diffusers
    dispatch_attention_fn = None


def _dispatch(processor, query, key, value, attn_mask):
    """The original dense attention of a Wan / HunyuanVideo processor ([B, N, H, D])."""
    if dispatch_attention_fn is not None:
        return dispatch_attention_fn(query, key, value, attn_mask=attn_mask, dropout_p=0.0,
                                     is_causal=False,
                                     backend=getattr(processor, "_attention_backend", None))
    out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2),
                                         value.transpose(1, 2), attn_mask=attn_mask)
    return out.transpose(1, 2)


class _ModditProcessor:
    """Common state: the controller and this module's layer index.

    The attention call goes through the operator torch.ops.moddit.diffusers_attention
    (opaque to torch.compile: no graph break), which calls run_attention() back
    with this processor named by its handle tensor."""

    def __init__(self, controller, layer: int, original):
        self.controller = controller
        self.layer = layer
        self.original = original
        self._attention_backend = getattr(original, "_attention_backend", None)
        self._parallel_config = getattr(original, "_parallel_config", None)
        self._handle = _torch_ops.handle_tensor(_handles.register(self))

    def _attention(self, query, key, value, attention_mask, text_tokens: int,
                   qkv_layout: str = "NHD") -> torch.Tensor:
        return torch.ops.moddit.diffusers_attention(query, key, value, attention_mask,
                                                    self._handle, text_tokens, qkv_layout)

    def run_attention(self, query, key, value, attention_mask, text_tokens: int,
                      qkv_layout: str) -> torch.Tensor:
        """The operator's body: the controller's call, with this model's own dense
        attention for the calls the policy runs as plain dense attention."""
        return self.controller.attention(
            self.layer, query, key, value, text_tokens=text_tokens, key_mask=attention_mask,
            dense=lambda: self.dense(query, key, value, attention_mask), qkv_layout=qkv_layout)

    def dense(self, query, key, value, attention_mask) -> torch.Tensor:
        return _dispatch(self, query, key, value, attention_mask)


class WanModditProcessor(_ModditProcessor):
    """Replaces WanAttnProcessor in the self-attention (attn1) of every Wan block."""

    def __call__(self, attn, hidden_states: torch.Tensor,
                 encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 rotary_emb: Optional[Any] = None, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or attn.add_k_proj is not None:
            # Not a self-attention: leave it to diffusers.
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask,
                                 rotary_emb, **kwargs)
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query = attn.to_q(hidden_states)
            key = attn.to_k(hidden_states)
            value = attn.to_v(hidden_states)

        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        if rotary_emb is not None:
            def apply_rotary_emb(hidden_states, freqs_cos, freqs_sin):
                x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
                cos = freqs_cos[..., 0::2]
                sin = freqs_sin[..., 1::2]
                out = torch.empty_like(hidden_states)
                out[..., 0::2] = x1 * cos - x2 * sin
                out[..., 1::2] = x1 * sin + x2 * cos
                return out.type_as(hidden_states)

            query = apply_rotary_emb(query, *rotary_emb)
            key = apply_rotary_emb(key, *rotary_emb)

        hidden_states = self._attention(query, key, value, attention_mask, text_tokens=0)
        hidden_states = hidden_states.flatten(2, 3)
        hidden_states = hidden_states.type_as(query)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


class HunyuanVideoModditProcessor(_ModditProcessor):
    """Replaces HunyuanVideoAttnProcessor2_0 in the dual-stream (joint) and the
    single-stream blocks: text after the video, padded text masked as keys."""

    def __call__(self, attn, hidden_states: torch.Tensor,
                 encoder_hidden_states: Optional[torch.Tensor] = None,
                 attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb: Optional[torch.Tensor] = None):
        if encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask,
                                 image_rotary_emb)
        if attn.add_q_proj is None and encoder_hidden_states is not None:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)

        # 1. QKV projections
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        # 2. QK normalization
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # 3. Rotational positional embeddings applied to latent stream
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            if attn.add_q_proj is None and encoder_hidden_states is not None:
                text = encoder_hidden_states.shape[1]
                query = torch.cat([apply_rotary_emb(query[:, :-text], image_rotary_emb,
                                                    sequence_dim=1), query[:, -text:]], dim=1)
                key = torch.cat([apply_rotary_emb(key[:, :-text], image_rotary_emb,
                                                  sequence_dim=1), key[:, -text:]], dim=1)
            else:
                query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
                key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        # 4. Encoder condition QKV projection and normalization
        if attn.add_q_proj is not None and encoder_hidden_states is not None:
            encoder_query = attn.add_q_proj(encoder_hidden_states)
            encoder_key = attn.add_k_proj(encoder_hidden_states)
            encoder_value = attn.add_v_proj(encoder_hidden_states)

            encoder_query = encoder_query.unflatten(2, (attn.heads, -1))
            encoder_key = encoder_key.unflatten(2, (attn.heads, -1))
            encoder_value = encoder_value.unflatten(2, (attn.heads, -1))

            if attn.norm_added_q is not None:
                encoder_query = attn.norm_added_q(encoder_query)
            if attn.norm_added_k is not None:
                encoder_key = attn.norm_added_k(encoder_key)

            query = torch.cat([query, encoder_query], dim=1)
            key = torch.cat([key, encoder_key], dim=1)
            value = torch.cat([value, encoder_value], dim=1)

        # 5. Attention (moddit): text after the video, padding from the mask.
        hidden_states = self._attention(query, key, value, attention_mask,
                                        text_tokens=encoder_hidden_states.shape[1])
        hidden_states = hidden_states.flatten(2, 3)
        hidden_states = hidden_states.to(query.dtype)

        # 6. Output projection
        hidden_states, encoder_hidden_states = (
            hidden_states[:, : -encoder_hidden_states.shape[1]],
            hidden_states[:, -encoder_hidden_states.shape[1]:],
        )
        if getattr(attn, "to_out", None) is not None:
            hidden_states = attn.to_out[0](hidden_states)
            hidden_states = attn.to_out[1](hidden_states)
        if getattr(attn, "to_add_out", None) is not None:
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return hidden_states, encoder_hidden_states


class CogVideoXModditProcessor(_ModditProcessor):
    """Replaces CogVideoXAttnProcessor2_0: text before the video, [B, H, N, D]
    tensors (passed to moddit as layout HND, no copy)."""

    def dense(self, query, key, value, attention_mask) -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: Optional[torch.Tensor] = None,
                 image_rotary_emb: Optional[torch.Tensor] = None):
        text_seq_length = encoder_hidden_states.size(1)

        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)

        batch_size, sequence_length, _ = hidden_states.shape

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length,
                                                         batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1,
                                                 attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads

        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:],
                                                             image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:],
                                                               image_rotary_emb)

        if attention_mask is not None:
            # An arbitrary dense mask is not a block layout: keep diffusers' path.
            self.controller.note_fallback(self.layer, "attention_mask given")
            hidden_states = F.scaled_dot_product_attention(query, key, value,
                                                           attn_mask=attention_mask,
                                                           dropout_p=0.0, is_causal=False)
        else:
            hidden_states = self._attention(query, key, value, None, text_tokens=text_seq_length,
                                            qkv_layout="HND")

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1,
                                                              attn.heads * head_dim)

        # linear proj
        hidden_states = attn.to_out[0](hidden_states)
        # dropout
        hidden_states = attn.to_out[1](hidden_states)

        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1)
        return hidden_states, encoder_hidden_states


PROCESSORS = {
    "wan": WanModditProcessor,
    "hunyuan_video": HunyuanVideoModditProcessor,
    "cogvideox": CogVideoXModditProcessor,
}
