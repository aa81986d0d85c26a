"""DOVER's network, written for inference: module names and tensor shapes follow the published
`DOVER.pth` / `DOVER_plus_plus.pth` state dicts, so they load unchanged.

- technical branch: a 3D Swin-T (patch 2x4x4, window 8x7x7, depths 2-2-6-2, heads 3-6-12-24) with
  "fragment" position biases in its first three stages: inside a window, token pairs from the same
  32x32 fragment use `fragment_position_bias_table`, other pairs the ordinary relative bias scaled
  by how many fragment cells apart they are (the original's gate, kept as is);
- aesthetic branch: a ConvNeXt-T inflated to 3D (stem 2x4x4, depthwise kernels of temporal length
  1, 3, 1, 1, 3, 1, ...);
- one head per branch: 1x1x1 convolutions 768 -> 64 -> 1 with GELU, averaged over the score map.
Imported only when the dover scorer loads (it needs torch).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def to_windows(x, size):
    """(B, D, H, W, C) -> (B * windows, tokens per window, C)."""
    b, d, h, w, c = x.shape
    x = x.view(b, d // size[0], size[0], h // size[1], size[1], w // size[2], size[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, size[0] * size[1] * size[2], c)


def from_windows(windows, size, b, d, h, w):
    x = windows.view(b, d // size[0], h // size[1], w // size[2], size[0], size[1], size[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def fit_window(extent, window, shift):
    """A window no larger than the feature map; no shift along an axis the window covers whole."""
    window, shift = list(window), list(shift)
    for axis in range(3):
        if extent[axis] <= window[axis]:
            window[axis], shift[axis] = extent[axis], 0
    return tuple(window), tuple(shift)


def relative_index(window):
    """Index of every token pair of a window into the relative bias table."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in window], indexing="ij")).flatten(1)
    rel = (grid[:, :, None] - grid[:, None, :]).permute(1, 2, 0)
    rel = rel + torch.tensor([window[0] - 1, window[1] - 1, window[2] - 1])
    return rel[..., 0] * (2 * window[1] - 1) * (2 * window[2] - 1) + rel[..., 1] * (2 * window[2] - 1) + rel[..., 2]


@lru_cache(maxsize=64)
def shift_mask(padded, window, shift, device):
    """-100 between tokens of one shifted window that come from different regions, 0 elsewhere."""
    labels = torch.zeros((1, *padded, 1), device=device)
    region = 0
    cuts = [((slice(0, -window[a]), slice(-window[a], -shift[a]), slice(-shift[a], None))) for a in range(3)]
    for sd in cuts[0]:
        for sh in cuts[1]:
            for sw in cuts[2]:
                labels[:, sd, sh, sw, :] = region
                region += 1
    groups = to_windows(labels, window).squeeze(-1)
    diff = groups[:, None, :] - groups[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0, device=device), torch.tensor(0.0, device=device))


@lru_cache(maxsize=64)
def fragment_gate(padded, window, shift, device):
    """Per window and token pair: how many fragment cells apart (the grid has window[1] x window[2]
    cells over the whole map, found by nearest-neighbour scaling as the original does)."""
    cells = [torch.zeros(padded[0], dtype=torch.long),
             (torch.arange(padded[1]) * window[1]) // padded[1],
             (torch.arange(padded[2]) * window[2]) // padded[2]]
    grid = torch.stack(torch.meshgrid(*cells, indexing="ij"), -1)[None].to(device)
    grid = torch.roll(grid, shifts=(-shift[0], -shift[1], -shift[2]), dims=(1, 2, 3))
    per_window = to_windows(grid, window)
    return (per_window[:, None, :, :] - per_window[:, :, None, :]).abs().sum(-1).float()


class WindowAttention3D(nn.Module):
    def __init__(self, dim, window, heads, fragment_bias):
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        table = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table, heads))
        if fragment_bias:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros(table, heads))
        self.register_buffer("relative_position_index", relative_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask, gate):
        windows, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(windows, tokens, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        # a smaller (clamped) window uses the first rows of the full window's index, as the original
        index = self.relative_position_index[:tokens, :tokens].reshape(-1)
        bias = self.relative_position_bias_table[index].reshape(tokens, tokens, -1).permute(2, 0, 1)
        count = gate.shape[0]
        if hasattr(self, "fragment_position_bias_table"):
            fragment = self.fragment_position_bias_table[index].reshape(tokens, tokens, -1).permute(2, 0, 1)
            bias = bias[None] * gate[:, None] + fragment[None] * (1 - gate[:, None])
        else:
            bias = bias[None].expand(count, -1, -1, -1)
        attn = attn.view(windows // count, count, self.heads, tokens, tokens) + bias[None]
        if mask is not None:
            attn = attn + mask[None, :, None]
        attn = attn.view(-1, self.heads, tokens, tokens).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(windows, tokens, channels))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock3D(nn.Module):
    def __init__(self, dim, heads, window, shift, fragment_bias):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, window, heads, fragment_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x, mask):
        b, d, h, w, c = x.shape
        window, shift = fit_window((d, h, w), self.window, self.shift)
        y = self.norm1(x)
        pad = [(window[a] - (d, h, w)[a] % window[a]) % window[a] for a in range(3)]
        y = F.pad(y, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        padded = y.shape[1:4]
        shifted = any(shift)
        if shifted:
            y = torch.roll(y, shifts=(-shift[0], -shift[1], -shift[2]), dims=(1, 2, 3))
        gate = fragment_gate(tuple(padded), window, shift, y.device)
        out = self.attn(to_windows(y, window), mask if shifted else None, gate)
        y = from_windows(out.view(-1, *window, c), window, b, *padded)
        if shifted:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        x = x + y[:, :d, :h, :w].contiguous()
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        _, _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, dim, depth, heads, window, fragment_bias, merge):
        super().__init__()
        self.window = window
        self.shift = tuple(n // 2 for n in window)
        self.blocks = nn.ModuleList([SwinBlock3D(dim, heads, window, (0, 0, 0) if i % 2 == 0 else self.shift,
                                                 fragment_bias) for i in range(depth)])
        self.downsample = PatchMerging(dim) if merge else None

    def forward(self, x):  # (B, C, D, H, W)
        _, _, d, h, w = x.shape
        window, shift = fit_window((d, h, w), self.window, self.shift)
        padded = tuple(-(-n // window[a]) * window[a] for a, n in enumerate((d, h, w)))
        mask = shift_mask(padded, window, shift, x.device) if any(shift) else None
        x = x.permute(0, 2, 3, 4, 1)
        for block in self.blocks:
            x = block(x, mask)
        if self.downsample is not None:
            x = self.downsample(x)
        return x.permute(0, 4, 1, 2, 3)


class PatchEmbed3D(nn.Module):
    def __init__(self, patch=(2, 4, 4), dim=96):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        d, h, w = x.shape[2:]
        x = F.pad(x, (0, -w % self.patch[2], 0, -h % self.patch[1], 0, -d % self.patch[0]))
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class SwinTechnical(nn.Module):
    def __init__(self, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=(8, 7, 7),
                 fragment_biases=(True, True, True, False), dim=96):
        super().__init__()
        self.patch_embed = PatchEmbed3D(dim=dim)
        self.layers = nn.ModuleList([SwinStage(dim * 2 ** i, depths[i], heads[i], window, fragment_biases[i],
                                               i < len(depths) - 1) for i in range(len(depths))])
        self.norm = nn.LayerNorm(dim * 2 ** (len(depths) - 1))

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x.contiguous())
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class ChannelsFirstNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim)), eps

    def forward(self, x):
        return F.layer_norm(x.movedim(1, -1), self.weight.shape, self.weight, self.bias, self.eps).movedim(-1, 1)


class ConvNeXtBlock3D(nn.Module):
    def __init__(self, dim, temporal):
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, kernel_size=(temporal, 7, 7), padding=(temporal // 2, 3, 3), groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 4, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 4, 1, 2, 3)


class ConvNeXtAesthetic(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), inflate="131"):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv3d(3, dims[0], kernel_size=(2, 4, 4), stride=(2, 4, 4)), ChannelsFirstNorm(dims[0]))]
            + [nn.Sequential(ChannelsFirstNorm(dims[i]), nn.Conv3d(dims[i], dims[i + 1], (1, 2, 2), (1, 2, 2)))
               for i in range(3)])
        self.stages = nn.ModuleList([nn.Sequential(*[ConvNeXtBlock3D(dims[i], int(inflate[j % len(inflate)]))
                                                     for j in range(depths[i])]) for i in range(4)])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class QualityHead(nn.Module):
    def __init__(self, channels=768, hidden=64):
        super().__init__()
        self.fc_hid, self.gelu, self.fc_last = nn.Conv3d(channels, hidden, 1), nn.GELU(), nn.Conv3d(hidden, 1, 1)

    def forward(self, x):
        return self.fc_last(self.gelu(self.fc_hid(x)))


class Dover(nn.Module):
    """technical_backbone/technical_head and aesthetic_backbone/aesthetic_head, as in DOVER.pth."""

    def __init__(self):
        super().__init__()
        self.technical_backbone = SwinTechnical()
        self.aesthetic_backbone = ConvNeXtAesthetic()
        self.technical_head = QualityHead()
        self.aesthetic_head = QualityHead()

    def forward(self, technical, aesthetic):
        """Views (clips, 3, T, 224, 224) normalised -> per-clip mean score of each branch."""
        return (self.technical_head(self.technical_backbone(technical)).mean((1, 2, 3, 4)),
                self.aesthetic_head(self.aesthetic_backbone(aesthetic)).mean((1, 2, 3, 4)))
