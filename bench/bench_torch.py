#!/usr/bin/python3
"""PyTorch side of the benchmarks (Debian python3-torch, CPU): the same cases,
shapes and timing rule as bench_nncore.c. Prints one JSON object per case.
    /usr/bin/python3 bench/bench_torch.py --threads N [--case NAME]
"""
import argparse
import json
import math
import time
import types

import torch
import torch.nn as nn
import torch.nn.functional as F


last_min_ms = None


def time_case(fn):
    for _ in range(3):
        fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < 200 and (len(ts) < 5 or time.perf_counter() - start < 1.0):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    global last_min_ms
    last_min_ms = ts[0]  # the fastest run, reported beside the median (noise only ever adds time)
    return ts[len(ts) // 2]


def detector_net(w=16):
    """The network of models/detect/detector.c, as a class."""

    def cbr(i, o, s):
        return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.low = nn.Sequential(*cbr(3, w, 2), *cbr(w, 2 * w, 2), *cbr(2 * w, 2 * w, 1),
                                     *cbr(2 * w, 4 * w, 2), *cbr(4 * w, 4 * w, 1))
            self.high = nn.Sequential(*cbr(4 * w, 8 * w, 2), *cbr(8 * w, 8 * w, 1))
            self.lateral = nn.Conv2d(4 * w, 8 * w, 1)
            self.fuse = nn.Sequential(*cbr(8 * w, 4 * w, 1))
            self.head = nn.Conv2d(4 * w, 5, 1)

        def forward(self, x):
            c4 = self.low(x)
            h = self.high(c4)
            f = F.interpolate(h, size=c4.shape[2:], mode="nearest") + self.lateral(c4)
            return self.head(self.fuse(f))

    return Det


def centernet_loss(out, heat, reg, mask):
    """models/detect/detector.c's det_loss: penalty-reduced focal loss on the heatmap, L1 on the boxes."""
    logits, r = out[:, :1], out[:, 1:]
    pos = (heat == 1).float()
    negw = (1 - pos) * (1 - heat) ** 4
    p = torch.sigmoid(logits)
    log_p, log_1mp = -F.softplus(-logits), -F.softplus(logits)
    norm = 1.0 / max(float(mask.sum()), 1.0)
    hl = -norm * (pos * (1 - p) ** 2 * log_p + negw * p * p * log_1mp).sum()
    return hl + norm * ((r - reg).abs() * mask).sum()


def codec_nets(n=64, m_=192, k=64):
    """The networks of models/codec/codec.c (bmshj2018 hyperprior with mbt2018's mean head, the shipped
    model's per-level scales in front of each GDN, and its two 64-channel checkerboard context models)."""

    class GDN(nn.Module):
        def __init__(self, c, inverse=False):
            super().__init__()
            self.beta = nn.Parameter(torch.ones(c))
            self.gamma = nn.Parameter(0.1 * torch.eye(c))
            self.level_scale = nn.Parameter(torch.ones(1, c, 1, 1))  # the coded level's row of the per-level scales
            self.inverse = inverse

        def forward(self, x):
            x = x * self.level_scale
            norm = F.conv2d(x * x, self.gamma[:, :, None, None], self.beta).sqrt()
            return x * norm if self.inverse else x / norm

    def dconv(i, o):
        return nn.ConvTranspose2d(i, o, 5, 2, 2, output_padding=1)

    c = types.SimpleNamespace(n=n, m=m_, k=k)
    c.g_a = nn.Sequential(nn.Conv2d(3, n, 5, 2, 2), GDN(n), nn.Conv2d(n, n, 5, 2, 2), GDN(n),
                          nn.Conv2d(n, n, 5, 2, 2), GDN(n), nn.Conv2d(n, m_, 5, 2, 2))
    c.h_a = nn.Sequential(nn.Conv2d(m_, n, 3, 1, 1), nn.ReLU(), nn.Conv2d(n, n, 5, 2, 2), nn.ReLU(),
                          nn.Conv2d(n, n, 5, 2, 2))
    c.h_s_trunk = nn.Sequential(dconv(n, n), nn.ReLU(), dconv(n, n), nn.ReLU())
    c.h_s_scale = nn.Sequential(nn.Conv2d(n, m_, 3, 1, 1), nn.ReLU())
    c.h_s_mean = nn.Conv2d(n, m_, 3, 1, 1)
    # checkerboard context (codec.c's context_params): anchors ((y + x) even) under the hyperprior; the other
    # half's means and scales corrected from the anchors' integers in units of their scale (a 5x5 conv whose
    # taps on the position's own colour are zero) and from its own quantised scale index
    c.ctx_conv, c.ctx_spread = nn.Conv2d(m_, k, 5, 1, 2), nn.Conv2d(m_, k, 1, bias=False)
    c.ctx_mean, c.ctx_scale = nn.Conv2d(k, m_, 1), nn.Conv2d(k, m_, 1)
    # the anchors' context: the anchors of odd rows corrected the same way from those of even rows (a 5x5
    # conv whose only non-zero taps are the four diagonal ones)
    c.actx_conv, c.actx_spread = nn.Conv2d(m_, k, 5, 1, 2), nn.Conv2d(m_, k, 1, bias=False)
    c.actx_mean, c.actx_scale = nn.Conv2d(k, m_, 1), nn.Conv2d(k, m_, 1)
    c.g_s = nn.Sequential(dconv(m_, n), GDN(n, True), dconv(n, n), GDN(n, True), dconv(n, n), GDN(n, True),
                          dconv(n, 3))
    c.table = torch.exp(torch.linspace(math.log(0.11), math.log(256.0), 64))  # CODEC_NUM_SCALES log-spaced scales
    c.modules = nn.ModuleList([c.g_a, c.h_a, c.h_s_trunk, c.h_s_scale, c.h_s_mean, c.ctx_conv, c.ctx_spread,
                               c.ctx_mean, c.ctx_scale, c.actx_conv, c.actx_spread, c.actx_mean, c.actx_scale, c.g_s])

    def h_s(z):  # scales and means of y
        h = c.h_s_trunk(z)
        return c.h_s_scale(h), c.h_s_mean(h)

    def second_half(anchor_q, scale, mu):  # means and scales of the second half
        s = scale.clamp_min(0.11)
        spread = torch.bucketize(scale.detach(), c.table).clamp_max(63).float() / 63  # first table scale >= scale
        e = F.relu(c.ctx_conv(anchor_q / s) + c.ctx_spread(spread))
        return mu + s * c.ctx_mean(e), s * (1 + c.ctx_scale(e))

    def odd_row_anchors(even_q, scale, mu):  # means of the anchors of odd rows
        s = scale.clamp_min(0.11)
        spread = torch.bucketize(scale.detach(), c.table).clamp_max(63).float() / 63
        e = F.relu(c.actx_conv(even_q / s) + c.actx_spread(spread))
        return mu + s * c.actx_mean(e)

    c.h_s, c.second_half, c.odd_row_anchors = h_s, second_half, odd_row_anchors
    return c


class AsrNet(nn.Module):
    """models/asr: two stride-2 3x3 convs over (mel, time), a projection, 3 bidirectional GRU layers, CTC."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 64, 3, 2, 1), nn.Conv2d(64, 64, 3, 2, 1)
        self.proj = nn.Linear(64 * 20, 256)
        self.rnn = nn.GRU(256, 256, 3, bidirectional=True)
        self.out = nn.Linear(512, 29)

    def forward(self, x):  # x [N, 1, 80, T] -> log-probs [T/4, N, 29]
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        n, c, m, t = h.shape
        h = F.relu(self.proj(h.permute(3, 0, 1, 2).reshape(t, n, c * m)))
        return F.log_softmax(self.out(self.rnn(h)[0]), 2)


def asr_macs(T):
    t2, t4 = T / 2, T / 4
    return (t2 * 40 * 64 * 9 + t4 * 20 * 64 * 64 * 9 + t4 * 1280 * 256 + 2 * t4 * 3 * 256 * 512
            + 2 * 2 * t4 * 3 * 256 * 768 + t4 * 512 * 29)


class TtsStep:
    """One step of models/tts/synth.c: prenet, 6 causal highway layers with cached inputs, attention in a
    5-character window, 6 more, two ReLU layers, 4 mel frames and a stop logit (D 128, 80 mels, r 4)."""

    def __init__(self, D=128, M=80, r=4, layers=6, L=100):
        self.D, self.rm = D, r * M
        self.pre1, self.pre2 = nn.Linear(r * M, D), nn.Linear(D, D)
        self.audio = [nn.Linear(3 * D, 2 * D) for _ in range(layers)]
        self.dec_in = nn.Linear(2 * D, D)
        self.dec = [nn.Linear(3 * D, 2 * D) for _ in range(layers)]
        self.fc1, self.fc2, self.out = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, r * M + 1)
        self.K, self.V = torch.randn(L, D), torch.randn(L, D)
        self.rings = [[torch.zeros(D)] * 55 for _ in range(2 * layers)]
        self.t, self.peak, self.prev, self.zero = 0, 0, torch.zeros(r * M), torch.zeros(D)

    def highway(self, lin, ring, h, d):
        ring[self.t % 55] = h
        taps = [ring[(self.t - k * d) % 55] if self.t >= k * d else self.zero for k in (2, 1, 0)]
        z = lin(torch.cat(taps))
        g = torch.sigmoid(z[:self.D])
        return h + g * (z[self.D:] - h)

    def step(self):
        dil = (1, 3, 9, 27, 1, 3)
        with torch.no_grad():
            h = F.relu(self.pre2(F.relu(self.pre1(self.prev))))
            for i, lin in enumerate(self.audio):
                h = self.highway(lin, self.rings[i], h, dil[i])
            lo, hi = max(0, self.peak - 1), min(self.K.shape[0] - 1, self.peak + 3)
            a = torch.softmax(self.K[lo:hi + 1] @ h / math.sqrt(self.D), 0)
            self.peak = max(self.peak, lo + int(torch.argmax(a)))
            x = self.dec_in(torch.cat([a @ self.V[lo:hi + 1], h]))
            for i, lin in enumerate(self.dec):
                x = self.highway(lin, self.rings[6 + i], x, dil[i])
            o = self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))
            self.prev = o[:self.rm]
            self.t += 1
            return o


def tts_step_macs(D=128, rm=320, layers=12, window=5):
    return rm * D + D * D + layers * 3 * D * 2 * D + 2 * D * D + 2 * D * D + D * (rm + 1) + 2 * window * D


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--case")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    def report(name, ms, gflop):
        print(json.dumps({"case": name, "threads": a.threads, "ms": round(ms, 3), "min_ms": round(last_min_ms, 3),
                          "gflop": gflop}), flush=True)

    want = lambda n: a.case is None or a.case == n
    if want("tts_decoder_step"):  # bench_nncore's: one step of e2etts's decoder, batch 1, cached inputs
        st = TtsStep()
        report("tts_decoder_step", time_case(st.step), tts_step_macs() * 2 / 1e9)
    if want("sgemm_1024"):
        x, y = torch.randn(1024, 1024), torch.randn(1024, 1024)
        with torch.no_grad():
            report("sgemm_1024", time_case(lambda: torch.mm(x, y)), 2.0 * 1024**3 / 1e9)
    conv_gf = 2.0 * 64 * 56 * 56 * 64 * 9 / 1e9
    if want("conv3x3_64_fwd"):
        x, w, b = torch.randn(1, 64, 56, 56), torch.randn(64, 64, 3, 3) * 0.05, torch.zeros(64)
        with torch.no_grad():
            report("conv3x3_64_fwd", time_case(lambda: F.conv2d(x, w, b, padding=1)), conv_gf)
    if want("conv3x3_64_fwd_bwd"):
        x = torch.randn(1, 64, 56, 56, requires_grad=True)
        w = (torch.randn(64, 64, 3, 3) * 0.05).requires_grad_()
        b = torch.zeros(64, requires_grad=True)

        def step():
            x.grad = w.grad = b.grad = None
            F.conv2d(x, w, b, padding=1).sum().backward()

        report("conv3x3_64_fwd_bwd", time_case(step), conv_gf * 3)
    if want("cnn_train_step"):
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(32, 3, 64, 64), torch.arange(32) % 10

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        macs = 64 * 64 * 3 * 32 * 9 + 32 * 32 * 32 * 64 * 9 + 16 * 16 * 64 * 128 * 9
        report("cnn_train_step", time_case(step), macs * 2 * 3 * 32 / 1e9)
    if want("lstm_256_fwd_bwd"):
        lstm = nn.LSTM(256, 256)
        x = torch.randn(100, 8, 256)

        def step():
            lstm.zero_grad()
            lstm(x)[0].sum().backward()

        report("lstm_256_fwd_bwd", time_case(step), 3.0 * 2 * 8 * 1024 * 512 * 100 / 1e9)
    for gru in (False, True):  # the speech models' shapes (bench_nncore.c says which)
        name = "gru_512_b32_fwd_bwd" if gru else "lstm_512_b32_fwd_bwd"
        if not want(name):
            continue
        rnn = nn.GRU(512, 512) if gru else nn.LSTM(512, 512)
        x = torch.randn(200, 32, 512)

        def step():
            rnn.zero_grad()
            rnn(x)[0].sum().backward()

        report(name, time_case(step), 3.0 * 2 * 32 * (3 if gru else 4) * 512 * 1024 * 200 / 1e9)
    if want("mha_256_fwd_bwd"):
        mha = nn.MultiheadAttention(256, 4, batch_first=True)
        x = torch.randn(8, 200, 256)

        def step():
            mha.zero_grad()
            mha(x, x, x, need_weights=False)[0].sum().backward()

        report("mha_256_fwd_bwd", time_case(step), 3.0 * 2 * 8 * 200 * (4.0 * 256 * 256 + 2.0 * 200 * 256) / 1e9)
    if want("asr_train_step"):  # bench_nncore's: 16 utterances of 600 frames, 80 labels each, Adam, clip 5
        net = AsrNet().train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.randn(16, 1, 80, 600)
        tg = torch.randint(1, 29, (16, 80))

        def step():
            opt.zero_grad()
            lp = net(x)
            il = torch.full((16,), lp.shape[0], dtype=torch.long)
            F.ctc_loss(lp, tg, il, torch.full((16,), 80, dtype=torch.long), blank=0, zero_infinity=True).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()

        report("asr_train_step", time_case(step), asr_macs(600) * 2 * 3 * 16 / 1e9)
    if want("asr_recognize_6s"):  # one utterance of 6 s, batch 1, no grad; greedy decoding is a few argmaxes
        net = AsrNet().eval()
        x = torch.randn(1, 1, 80, 600)

        def step():
            with torch.no_grad():
                x0 = (x - x.mean(3, keepdim=True)) / x.std(3, keepdim=True)
                net(x0).argmax(2)

        report("asr_recognize_6s", time_case(step), asr_macs(600) * 2 / 1e9)
    if want("detect_320_fwd"):
        Det = detector_net()
        m = Det().eval()
        x = torch.randn(1, 3, 320, 320)
        # nncore folds the batch norms into the convs for inference; give PyTorch the same chance
        # (torch.fx's fuse) and keep whichever of the two runs faster here
        try:
            from torch.fx.experimental.optimization import fuse as fx_fuse
            fused = fx_fuse(m)
            with torch.no_grad():
                t_eager, t_fused = time_case(lambda: m(x)), time_case(lambda: fused(x))
            if t_fused < t_eager:
                m = fused
        except Exception:  # an fx without fuse: eager only
            pass
        macs = (160 * 160 * 16 * 27 + 80 * 80 * 32 * 144 + 80 * 80 * 32 * 288 + 40 * 40 * 64 * 288 + 40 * 40 * 64 * 576
                + 20 * 20 * 128 * 576 + 20 * 20 * 128 * 1152 + 40 * 40 * 128 * 64 + 40 * 40 * 64 * 1152 + 40 * 40 * 5 * 64)
        with torch.no_grad():
            report("detect_320_fwd", time_case(lambda: m(x)), macs * 2 / 1e9)

    if want("detect_train_step"):  # bench_nncore's: batch 16 at 320, AdamW, clip 10, three boxes per image
        m = detector_net()().train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=5e-4)
        x = torch.randn(16, 3, 320, 320)
        heat, reg, mask = torch.zeros(16, 1, 40, 40), torch.zeros(16, 4, 40, 40), torch.zeros(16, 1, 40, 40)
        yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
        for b in range(16):
            for j in range(3):
                cx, cy = (20 + 90 * j + 3 * b + 20 + 5 * j) / 8, (30 + 80 * j + 2 * b + 30 + 2.5 * b) / 8
                px, py = int(cx), int(cy)
                heat[b, 0] = torch.maximum(heat[b, 0], torch.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 2))
                heat[b, 0, py, px] = 1
                reg[b, :, py, px] = torch.tensor([cx - px, cy - py, 1.0, 2.0])
                mask[b, 0, py, px] = 1

        def step():
            opt.zero_grad()
            centernet_loss(m(x), heat, reg, mask).backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
            opt.step()

        macs = (160 * 160 * 16 * 27 + 80 * 80 * 32 * 144 + 80 * 80 * 32 * 288 + 40 * 40 * 64 * 288 + 40 * 40 * 64 * 576
                + 20 * 20 * 128 * 576 + 20 * 20 * 128 * 1152 + 40 * 40 * 128 * 64 + 40 * 40 * 64 * 1152 + 40 * 40 * 5 * 64)
        report("detect_train_step", time_case(step), macs * 2 * 3 * 16 / 1e9)
    if want("codec_train_step"):  # bench_nncore's: batch 4 of 256x256, Adam, clip 5
        c = codec_nets()
        c.modules.train()
        opt = torch.optim.Adam(c.modules.parameters(), lr=1e-4)
        x = torch.rand(4, 3, 256, 256)
        Hy = Wy = 256 // 16
        anchor = ((torch.arange(Hy)[:, None] + torch.arange(Wy)[None, :]) % 2 == 0).float()[None, None]
        even = anchor * (torch.arange(Hy)[:, None] % 2 == 0).float()[None, None]
        odd = anchor - even
        lam = torch.tensor([0.0015, 0.006, 0.025, 0.1])[:, None, None, None]

        def bits(v, mu, s):  # -log2 of the Gaussian's mass on [v - 0.5, v + 0.5]
            s = s.clamp_min(0.11)
            up, lo = (v - mu + 0.5) / s, (v - mu - 0.5) / s
            p = 0.5 * (torch.erfc(-up / math.sqrt(2)) - torch.erfc(-lo / math.sqrt(2)))
            return -torch.log2(p.clamp_min(1e-9)).sum()

        def step():  # codec_train_forward: additive noise for the rate, the noisy latents through g_s
            opt.zero_grad()
            y = c.g_a(x)
            z = c.h_a(y.abs())
            zt = z + torch.rand_like(z) - 0.5
            s, mu = c.h_s(zt)
            yt = y + torch.rand_like(y) - 0.5
            mu_a = torch.where(odd > 0, c.odd_row_anchors((yt - mu) * even, s, mu), mu)
            mu2, s2 = c.second_half((yt - mu) * anchor, s, mu)
            rate = bits(yt, torch.where(anchor > 0, mu_a, mu2), torch.where(anchor > 0, s, s2)) + \
                bits(zt, torch.zeros_like(zt), torch.ones_like(zt))
            x_hat = c.g_s(yt)
            loss = rate / (4 * 256 * 256) + (lam * (255 ** 2) * (x_hat - x) ** 2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(c.modules.parameters(), 5.0)
            opt.step()

        n, m_, k = c.n, c.m, c.k
        P2 = 128 * 128
        P4, P8, P16, P32, P64 = P2 / 4, P2 / 16, P2 / 64, P2 / 256, P2 / 1024
        hs = P64 * n * n * 25 + P32 * n * n * 25 + 2 * P16 * m_ * n * 9 + P16 * k * m_ * (12 + 1 + 2) + P16 / 4 * k * m_ * (4 + 1 + 2)
        enc_macs = (P2 * n * 75 + P4 * n * n * 25 + P8 * n * n * 25 + P16 * m_ * n * 25 + (P2 + P4 + P8) * n * n
                    + P16 * n * m_ * 9 + P32 * n * n * 25 + P64 * n * n * 25 + hs)
        dec_macs = hs + P16 * m_ * n * 25 + P8 * n * n * 25 + P4 * n * n * 25 + P2 * n * 3 * 25 + (P8 + P4 + P2) * n * n
        report("codec_train_step", time_case(step), 4 * (enc_macs + dec_macs) * 2 * 3 / 1e9)

    for (cw, ch) in ((768, 512), (1280, 720)):
        enc_name, dec_name = f"codec_encode_{cw}x{ch}", f"codec_decode_{cw}x{ch}"
        if not (want(enc_name) or want(dec_name)):
            continue
        c = codec_nets()
        c.modules.eval()
        n, m_, k = c.n, c.m, c.k
        g_a, h_a, h_s, g_s = c.g_a, c.h_a, c.h_s, c.g_s
        second_half, odd_row_anchors = c.second_half, c.odd_row_anchors
        H, W = (ch + 63) // 64 * 64, (cw + 63) // 64 * 64
        x = torch.rand(1, 3, H, W)
        P2 = H / 2 * W / 2
        P4, P8, P16, P32, P64 = P2 / 4, P2 / 16, P2 / 64, P2 / 256, P2 / 1024
        hs = P64 * n * n * 25 + P32 * n * n * 25 + 2 * P16 * m_ * n * 9 + P16 * k * m_ * (12 + 1 + 2) + P16 / 4 * k * m_ * (4 + 1 + 2)
        enc_macs = (P2 * n * 75 + P4 * n * n * 25 + P8 * n * n * 25 + P16 * m_ * n * 25 + (P2 + P4 + P8) * n * n
                    + P16 * n * m_ * 9 + P32 * n * n * 25 + P64 * n * n * 25 + hs)
        dec_macs = hs + P16 * m_ * n * 25 + P8 * n * n * 25 + P4 * n * n * 25 + P2 * n * 3 * 25 + (P8 + P4 + P2) * n * n
        Hy, Wy = H // 16, W // 16
        anchor = ((torch.arange(Hy)[:, None] + torch.arange(Wy)[None, :]) % 2 == 0).float()[None, None]
        even = anchor * (torch.arange(Hy)[:, None] % 2 == 0).float()[None, None]  # anchors of even rows
        odd = anchor - even
        with torch.no_grad():
            y = g_a(x)
            z = torch.round(h_a(y.abs()))

            def encode():  # the networks an encoder runs: analysis, hyper-analysis, hyper-synthesis, contexts
                yy = g_a(x)
                s, mu = h_s(torch.round(h_a(yy.abs())))
                mu_a = torch.where(odd > 0, odd_row_anchors(torch.round(yy - mu) * even, s, mu), mu)
                mu2, _ = second_half((torch.round(yy - mu_a) + mu_a - mu) * anchor, s, mu)
                return torch.round(yy - torch.where(anchor > 0, mu_a, mu2))  # the integers that get coded

            q = encode()

            def decode():  # the networks a decoder runs (no entropy coding on this side)
                s, mu = h_s(z)
                mu_a = torch.where(odd > 0, odd_row_anchors(q * even, s, mu), mu)
                mu2, _ = second_half((q + mu_a - mu) * anchor, s, mu)
                return g_s(q + torch.where(anchor > 0, mu_a, mu2))

            if want(enc_name):
                report(enc_name, time_case(encode), enc_macs * 2 / 1e9)
            if want(dec_name):
                report(dec_name, time_case(decode), dec_macs * 2 / 1e9)


if __name__ == "__main__":
    main()
