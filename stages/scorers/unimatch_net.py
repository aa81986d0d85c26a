"""GMFlow / UniMatch optical flow (one scale, no refinement), written for inference with module
names and shapes of the published `gmflow-scale1-mixdata-train320x576-4c3a6e9a.pth`:

CNN encoder (1/8 resolution, 128 channels, instance norm) -> sine position added per 2x2 split
window -> 6 transformer blocks (single-head self attention, then cross attention + FFN, inside
2x2 windows that shift on every other block) -> global matching (softmax over all positions of
the other frame) -> flow propagation by self attention on the first frame's features -> convex
8x upsampling. Imported only when the unimatch scorer loads (it needs torch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm1, self.norm2 = nn.InstanceNorm2d(cout), nn.InstanceNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), nn.InstanceNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class Encoder(nn.Module):
    def __init__(self, out=128):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.norm1 = nn.InstanceNorm2d(64)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, 2), ResidualBlock(96, 96))
        self.layer3 = nn.Sequential(ResidualBlock(96, 128, 2), ResidualBlock(128, 128))
        self.conv2 = nn.Conv2d(128, out, 1)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def to_splits(x, k):
    """(B, H, W, C) -> (B*k*k, H/k, W/k, C), windows row by row."""
    b, h, w, c = x.shape
    return x.view(b, k, h // k, k, w // k, c).permute(0, 1, 3, 2, 4, 5).reshape(b * k * k, h // k, w // k, c)


def from_splits(x, k):
    bk, h, w, c = x.shape
    return x.view(bk // (k * k), k, k, h, w, c).permute(0, 1, 3, 2, 4, 5).reshape(bk // (k * k), k * h, k * w, c)


def sine_position(h, w, channels, device):
    """DETR-style normalised sine/cosine position of a (h, w) grid, (channels, h, w): y half, then x half."""
    half = channels // 2
    scale, eps = 2 * math.pi, 1e-6
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device)[:, None].expand(h, w) / (h + eps) * scale
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device)[None, :].expand(h, w) / (w + eps) * scale
    freq = 10000 ** (2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half)

    def encode(v):
        v = v[..., None] / freq
        return torch.stack((v[..., 0::2].sin(), v[..., 1::2].cos()), dim=-1).flatten(2)

    return torch.cat((encode(ys), encode(xs)), dim=-1).permute(2, 0, 1)


def window_shift_mask(h, w, k, device):
    wh, ww = h // k, w // k
    sh, sw = wh // 2, ww // 2
    labels = torch.zeros((1, h, w, 1), device=device)
    region = 0
    for rows in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
        for cols in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
            labels[:, rows, cols, :] = region
            region += 1
    groups = to_splits(labels, k).reshape(k * k, wh * ww)
    diff = groups[:, None, :] - groups[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0, device=device), torch.tensor(0.0, device=device))


class TransformerLayer(nn.Module):
    def __init__(self, dim=128, ffn=True, expansion=4):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.v_proj, self.merge = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = ffn
        if ffn:
            self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim * expansion, bias=False), nn.GELU(),
                                     nn.Linear(2 * dim * expansion, dim, bias=False))
            self.norm2 = nn.LayerNorm(dim)

    def forward(self, source, target, h, w, k, shift, mask):
        b, _, c = source.shape
        q = self.q_proj(source).view(b, h, w, c)
        key = self.k_proj(target).view(b, h, w, c)
        value = self.v_proj(target).view(b, h, w, c)
        offset = (h // k // 2, w // k // 2)
        if shift:
            q, key, value = (torch.roll(t, shifts=(-offset[0], -offset[1]), dims=(1, 2)) for t in (q, key, value))
        q, key, value = (to_splits(t, k) for t in (q, key, value))
        n = q.shape[1] * q.shape[2]
        scores = q.reshape(-1, n, c) @ key.reshape(-1, n, c).transpose(1, 2) / math.sqrt(c)
        if shift:
            scores = scores + mask.repeat(b, 1, 1)
        out = (scores.softmax(-1) @ value.reshape(-1, n, c)).view(-1, h // k, w // k, c)
        out = from_splits(out, k)
        if shift:
            out = torch.roll(out, shifts=offset, dims=(1, 2))
        message = self.norm1(self.merge(out.reshape(b, h * w, c)))
        if self.ffn:
            message = self.norm2(self.mlp(torch.cat((source, message), dim=-1)))
        return source + message


class TransformerBlock(nn.Module):
    def __init__(self, dim=128):
        super().__init__()
        self.self_attn = TransformerLayer(dim, ffn=False)
        self.cross_attn_ffn = TransformerLayer(dim)

    def forward(self, source, target, h, w, k, shift, mask):
        source = self.self_attn(source, source, h, w, k, shift, mask)
        return self.cross_attn_ffn(source, target, h, w, k, shift, mask)


class FeatureTransformer(nn.Module):
    def __init__(self, layers=6, dim=128):
        super().__init__()
        self.layers = nn.ModuleList([TransformerBlock(dim) for _ in range(layers)])

    def forward(self, f0, f1, k):
        b, c, h, w = f0.shape
        mask = window_shift_mask(h, w, k, f0.device) if k > 1 else None
        pair = torch.cat((f0, f1)).flatten(2).transpose(1, 2)
        other = torch.cat((f1, f0)).flatten(2).transpose(1, 2)
        for i, layer in enumerate(self.layers):
            pair = layer(pair, other, h, w, k, shift=k > 1 and i % 2 == 1, mask=mask)
            other = torch.cat(pair.chunk(2)[::-1])
        f0, f1 = pair.chunk(2)
        return (f0.transpose(1, 2).reshape(b, c, h, w), f1.transpose(1, 2).reshape(b, c, h, w))


class FlowPropagation(nn.Module):
    def __init__(self, dim=128):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, feature, flow):
        b, c, h, w = feature.shape
        query = self.q_proj(feature.flatten(2).transpose(1, 2))
        key = self.k_proj(query)  # the original projects the projected query again
        prob = (query @ key.transpose(1, 2) / math.sqrt(c)).softmax(-1)
        return (prob @ flow.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, 2, h, w)


class GMFlow(nn.Module):
    """backbone / transformer / feature_flow_attn / upsampler, as in the published checkpoint."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, channels=128, upsample=8, splits=2):
        super().__init__()
        self.upsample, self.splits = upsample, splits
        self.backbone = Encoder(channels)
        self.transformer = FeatureTransformer(6, channels)
        self.feature_flow_attn = FlowPropagation(channels)
        self.upsampler = nn.Sequential(nn.Conv2d(2 + channels, 256, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(256, upsample ** 2 * 9, 1))

    def forward(self, img0, img1):
        """Images (B, 3, H, W) in 0-255, H and W multiples of 16 -> flow (B, 2, H, W) in pixels."""
        mean = torch.tensor(self.MEAN, device=img0.device).view(1, 3, 1, 1)
        std = torch.tensor(self.STD, device=img0.device).view(1, 3, 1, 1)
        features = self.backbone(torch.cat(((img0 / 255 - mean) / std, (img1 / 255 - mean) / std)))
        f0, f1 = features.chunk(2)
        b, c, h, w = f0.shape
        k = self.splits
        position = sine_position(h // k, w // k, c, f0.device)
        f0 = from_splits(to_splits(f0.permute(0, 2, 3, 1), k) + position.permute(1, 2, 0), k).permute(0, 3, 1, 2)
        f1 = from_splits(to_splits(f1.permute(0, 2, 3, 1), k) + position.permute(1, 2, 0), k).permute(0, 3, 1, 2)
        f0, f1 = self.transformer(f0, f1, k)
        ys, xs = torch.meshgrid(torch.arange(h, device=f0.device), torch.arange(w, device=f0.device), indexing="ij")
        grid = torch.stack((xs, ys)).float()[None].expand(b, -1, -1, -1)
        correlation = f0.flatten(2).transpose(1, 2) @ f1.flatten(2) / math.sqrt(c)
        target = correlation.softmax(-1) @ grid.flatten(2).transpose(1, 2)
        flow = target.transpose(1, 2).reshape(b, 2, h, w) - grid
        flow = self.feature_flow_attn(f0, flow)
        mask = self.upsampler(torch.cat((flow, f0), dim=1)).view(b, 1, 9, self.upsample, self.upsample, h, w)
        patches = F.unfold(self.upsample * flow, [3, 3], padding=1).view(b, 2, 9, 1, 1, h, w)
        up = (mask.softmax(dim=2) * patches).sum(dim=2)
        return up.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, self.upsample * h, self.upsample * w)
