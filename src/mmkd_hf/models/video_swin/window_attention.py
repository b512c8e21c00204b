"""Window attention of the Video Swin Transformer: window partition/merge, masks and the attention layer.

Part of the ``video_swin`` model folder (relative imports, torch and transformers only), so it travels with
``modeling_video_swin.py`` as remote code. Follows ``WindowAttention3D`` and the window partition and
shifted-window mask helpers of ``src/modelling/swin.py`` in github.com/gorjanradevski/multimodal-distillation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .configuration_video_swin import VideoSwinConfig

# Added to attention scores between tokens that a shifted window brings together from different regions.
SHIFTED_WINDOW_MASK_VALUE = -100.0

Triple = tuple[int, int, int]


# ----------------------------------------------------------------------------------------------------------
# Pure helpers
# ----------------------------------------------------------------------------------------------------------


def effective_window_and_shift(
    feature_size: Triple, window_size: Triple, shift_size: Triple
) -> tuple[Triple, Triple]:
    """Shrinks the window to the feature map, and drops the shift, on every axis where size <= window.

    Args:
        feature_size: (T, H, W) of the un-padded feature map.
        window_size: Configured window (T, H, W).
        shift_size: Configured shift (T, H, W), 0 or window // 2.

    Returns:
        The ``(window, shift)`` the block really uses, as in the original ``get_window_size``.
    """
    window = tuple(size if size <= win else win for size, win in zip(feature_size, window_size))
    shift = tuple(0 if size <= win else sh for size, win, sh in zip(feature_size, window_size, shift_size))
    return window, shift


def padding_to_multiple(size: Triple, multiple: Triple) -> Triple:
    """Zeros to add after each of (T, H, W) so that every axis becomes a multiple of ``multiple``."""
    return tuple((-length) % step for length, step in zip(size, multiple))


def relative_position_index(window_size: Triple) -> torch.Tensor:
    """Index into the relative-position bias table for every (query, key) pair of a 3-D window.

    Tokens are ordered (t, h, w) row-major. The relative offset (dt, dh, dw) of a pair, each shifted to start
    at 0, is flattened with strides ((2Wh-1)(2Ww-1), 2Ww-1, 1) into one of (2Wt-1)(2Wh-1)(2Ww-1) rows.

    Returns:
        Long tensor ``[Wt*Wh*Ww, Wt*Wh*Ww]``.
    """
    wt, wh, ww = window_size
    grid_t, grid_h, grid_w = torch.meshgrid(
        torch.arange(wt), torch.arange(wh), torch.arange(ww), indexing="ij"
    )
    coords = torch.stack([grid_t.flatten(), grid_h.flatten(), grid_w.flatten()])  # [3, N]
    offsets = coords[:, :, None] - coords[:, None, :]  # [3, N, N], query minus key
    offset_t = offsets[0] + (wt - 1)
    offset_h = offsets[1] + (wh - 1)
    offset_w = offsets[2] + (ww - 1)
    return offset_t * (2 * wh - 1) * (2 * ww - 1) + offset_h * (2 * ww - 1) + offset_w


def window_partition(x: torch.Tensor, window: Triple) -> torch.Tensor:
    """Splits ``[B, T, H, W, C]`` (each axis a multiple of the window) into ``[B, num_windows, tokens, C]``."""
    b, t, h, w, c = x.shape
    wt, wh, ww = window
    x = x.view(b, t // wt, wt, h // wh, wh, w // ww, ww, c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # B, nT, nH, nW, wt, wh, ww, C
    return x.reshape(b, -1, wt * wh * ww, c)


def window_merge(windows: torch.Tensor, window: Triple, padded_size: Triple) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B, num_windows, tokens, C]`` -> ``[B, T, H, W, C]``."""
    b, _, _, c = windows.shape
    t, h, w = padded_size
    wt, wh, ww = window
    x = windows.view(b, t // wt, h // wh, w // ww, wt, wh, ww, c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # B, nT, wt, nH, wh, nW, ww, C
    return x.reshape(b, t, h, w, c)


def shifted_window_mask(padded_size: Triple, window: Triple, shift: Triple, device: torch.device) -> torch.Tensor:
    """Additive mask that keeps a shifted window from mixing tokens of different regions.

    After the cyclic roll by ``-shift`` every axis of length L splits into regions [0, L - window),
    [L - window, L - shift) and [L - shift, L) (a single region when the shift is 0). Two tokens of the same
    window may attend to each other only if they lie in the same region on all three axes.

    Returns:
        Float tensor ``[num_windows, tokens, tokens]`` holding 0 (allowed) or -100 (masked).
    """
    region_ids = []
    for length, win, sh in zip(padded_size, window, shift):
        position = torch.arange(length, device=device)
        if sh > 0:
            region_ids.append((position >= length - win).long() + (position >= length - sh).long())
        else:
            region_ids.append(torch.zeros_like(position))
    region = (
        region_ids[0][:, None, None] * 9 + region_ids[1][None, :, None] * 3 + region_ids[2][None, None, :]
    )  # [T, H, W], one id in 0..26 per position
    region_windows = window_partition(region[None, ..., None], window)[0, ..., 0]  # [num_windows, tokens]
    different = region_windows[:, :, None] != region_windows[:, None, :]
    return different.float() * SHIFTED_WINDOW_MASK_VALUE


def caching_allowed() -> bool:
    """Whether derived tensors may be cached: no autograd, and not inside ``torch.compile`` / ``torch.export``."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return not (is_exporting is not None and is_exporting())


# Set to False to run CPU inference through ``scaled_dot_product_attention`` as well (benchmarks compare both).
CHUNKED_CPU_ATTENTION = True
# Heads x windows per matrix product in :func:`chunked_window_attention`: its scores (6 x 392 x 392 for Swin-T's
# 8x7x7 windows, 1.8 MiB in bfloat16) stay in the cache between the product, the softmax and the second product.
ATTENTION_CHUNK_HEAD_WINDOWS = 6


def chunked_window_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, chunk: int
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + mask) v`` for ``[B, windows, heads, N, d]``, a few windows at a time.

    The CPU inference path of window attention. On CPUs the fused
    ``scaled_dot_product_attention`` kernel runs the many small products of window attention (N = 392 tokens,
    head dim 32 for Swin-T) far below the machine's matmul rate; plain batched products over chunks of
    ``chunk`` windows whose scores fit in the cache run Swin-T's first-stage attention about 1.7x faster on two
    cores, and the whole bfloat16 student 1.1-1.25x faster (``benchmarks/student_inference.py``).
    The scores are formed by one ``baddbmm`` (mask added in the same pass) in the inputs' dtype.

    Args:
        query, key, value: ``[B, windows, heads, N, d]``, any strides.
        mask: Additive ``[1 | windows, heads, N, N]`` in the inputs' dtype.
        chunk: Windows per product.

    Returns:
        ``[B, windows, N, heads, d]`` (contiguous), the layout the output projection reads.
    """
    b, num_windows, heads, n, d = query.shape
    query, key, value = (t.reshape(b * num_windows * heads, n, d) for t in (query, key, value))
    out = query.new_empty(b, num_windows, n, heads, d)
    per_window = mask.shape[0] > 1
    shared = None if per_window else mask.expand(chunk, heads, n, n).reshape(chunk * heads, n, n)
    scale = d**-0.5
    for batch in range(b):
        for start in range(0, num_windows, chunk):
            stop = min(start + chunk, num_windows)
            rows = slice((batch * num_windows + start) * heads, (batch * num_windows + stop) * heads)
            if per_window:
                bias = mask[start:stop].reshape((stop - start) * heads, n, n)
            else:
                bias = shared[: (stop - start) * heads]
            scores = torch.baddbmm(bias, query[rows], key[rows].transpose(1, 2), alpha=scale)
            attended = torch.bmm(scores.softmax(dim=-1), value[rows])
            out[batch, start:stop] = attended.view(stop - start, heads, n, d).transpose(1, 2)
    return out


def use_chunked_attention(tensor: torch.Tensor, training: bool) -> bool:
    """Whether window attention takes :func:`chunked_window_attention`: CPU inference, eager mode only.

    Training (autograd, dropout), other devices, ``torch.compile`` and ``torch.export`` keep
    ``scaled_dot_product_attention``, which exports as one operator.
    """
    return CHUNKED_CPU_ATTENTION and tensor.device.type == "cpu" and not training and caching_allowed()


class VideoSwinWindowAttention(nn.Module):
    """Multi-head self-attention inside 3-D windows with a learned relative-position bias."""

    def __init__(self, config: VideoSwinConfig, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = tuple(config.window_size)
        self.attn_drop_rate = config.attn_drop_rate
        wt, wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wt - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(self.window_size), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(config.drop_rate)
        self._mask_cache: tuple | None = None
        init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self, num_tokens: int) -> torch.Tensor:
        """Bias ``[heads, tokens, tokens]`` (a view) for a window of ``num_tokens`` tokens.

        A shrunk window takes the top-left ``num_tokens x num_tokens`` block of the full index, exactly as
        the original (and torchvision); that is exact when only the leading (temporal) axis shrinks.
        """
        index = self.relative_position_index[:num_tokens, :num_tokens].reshape(-1)
        table = self.relative_position_bias_table
        return table[index].view(num_tokens, num_tokens, self.num_heads).permute(2, 0, 1)

    def attention_mask(self, num_tokens: int, region_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask ``[1 | num_windows, heads, tokens, tokens]`` in ``dtype``: bias (+ region mask).

        The sum is formed in the table's precision and cast once. Without autograd (evaluation, frozen
        teachers) it is cached per window size, region mask and dtype until the bias table changes (its
        version counter, storage, device or dtype), so inference adds no per-forward gather, add or cast.
        The cache costs memory: for Video Swin-T at 16 x 224 x 224 all blocks together hold about 80 M
        values (about 155 MiB in bfloat16, 310 MiB in float32); a training step (autograd on) holds none.
        """
        table = self.relative_position_bias_table
        use_cache = caching_allowed()
        if use_cache:
            key = (num_tokens, table._version, table.data_ptr(), table.device, table.dtype, dtype)
            cached = self._mask_cache
            # `is` on the region mask is sound: the cache holds a reference, so its id cannot be reused.
            if cached is not None and cached[0] == key and cached[1] is region_mask:
                return cached[2]
        bias = self.relative_position_bias(num_tokens)
        mask = bias.unsqueeze(0) if region_mask is None else region_mask.unsqueeze(1) + bias
        mask = mask.to(dtype).contiguous()
        if use_cache:
            self._mask_cache = (key, region_mask, mask)
        return mask

    def fused_attention(self, qkv: torch.Tensor, mask: torch.Tensor, per_window_mask: bool) -> torch.Tensor:
        """Window attention through ``scaled_dot_product_attention``: training, GPUs, compile and export.

        Args:
            qkv: ``[3, B, windows, heads, N, head_dim]`` (a view of the qkv projection).
            mask: Additive ``[1 | windows, heads, N, N]``; one entry per window when ``per_window_mask``.

        Returns:
            ``[B, windows, N, heads, head_dim]`` (contiguous), like :func:`chunked_window_attention`.
        """
        _, b, num_windows, heads, num_tokens, head_dim = qkv.shape
        if not per_window_mask or b == 1:
            # Windows fold into the batch axis (views, no copy); the mask has one entry per window.
            query, key, value = (qkv[i].flatten(0, 1) for i in range(3))
        else:
            # Windows join the heads axis so that the per-window mask broadcasts over the batch.
            query, key, value = (qkv[i].reshape(b, num_windows * heads, num_tokens, head_dim) for i in range(3))
            mask = mask.view(1, num_windows * heads, num_tokens, num_tokens)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=self.attn_drop_rate if self.training else 0.0
        )
        attended = attended.reshape(b, num_windows, heads, num_tokens, head_dim).transpose(2, 3)
        # An explicit copy, not `reshape`: traced graphs must not bake in a view that relies on the strides of
        # one SDPA implementation (torch.onnx.export(dynamo=True) decomposes SDPA with other strides). Eager
        # `reshape` copies here anyway.
        return attended.clone(memory_format=torch.contiguous_format)

    def forward(self, windows: torch.Tensor, region_mask: torch.Tensor | None) -> torch.Tensor:
        """Attends within each window.

        Args:
            windows: ``[B, num_windows, tokens, C]``.
            region_mask: ``[num_windows, tokens, tokens]`` shifted-window mask, or None without shift.

        Returns:
            ``[B, num_windows, tokens, C]``.
        """
        b, num_windows, num_tokens, c = windows.shape
        head_dim = c // self.num_heads
        qkv = self.qkv(windows).reshape(b, num_windows, num_tokens, 3, self.num_heads, head_dim)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5)  # [3, B, windows, heads, N, head_dim], a view
        mask = self.attention_mask(num_tokens, region_mask, qkv.dtype)  # [1 | windows, heads, N, N]
        if use_chunked_attention(windows, self.training):
            chunk = max(1, ATTENTION_CHUNK_HEAD_WINDOWS // self.num_heads)
            attended = chunked_window_attention(qkv[0], qkv[1], qkv[2], mask, chunk)
        else:
            attended = self.fused_attention(qkv, mask, per_window_mask=region_mask is not None)
        return self.proj_drop(self.proj(attended.view(b, num_windows, num_tokens, c)))
