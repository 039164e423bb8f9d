#!/usr/bin/env python3
"""PyTorch twin of e2ecodec's transforms, for checking nncore's training against PyTorch's.

g_a / g_s as in models/codec/codec.c (N 64, M 96, GDN with lower-bounded beta and gamma, PyTorch's
default init, which nncore copies), trained distortion-only with straight-through rounding, batch 8 of
128x128 BSDS500 patches with flips, Adam with `e2e train codec`'s warm-up + cosine schedule paced by
the time budget, grad-norm clip 5. It prints the training PSNR every 125 steps, to set beside an nncore
run of the same length. A diagnostic, never run by the build or the tests:

    /usr/bin/python3 tools/codec_torch_twin.py ../shared/data 300
"""
import glob, math, random, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
torch.set_num_threads(2); torch.manual_seed(1); random.seed(1)
root = sys.argv[1]; budget = float(sys.argv[2])
files = sorted(glob.glob(root + "/codec/bsds500/train/*.jpg") + glob.glob(root + "/codec/bsds500/test/*.jpg"))
imgs = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0 for f in files]
class LB(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b):
        ctx.save_for_backward(x); ctx.b = b; return x.clamp(min=b)
    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors; return g * ((x >= ctx.b) | (g < 0)).to(g.dtype), None
class GDN(nn.Module):
    def __init__(s, c, inv):
        super().__init__(); s.inv = inv
        s.beta = nn.Parameter(torch.ones(c)); s.gamma = nn.Parameter(0.1 * torch.eye(c))
    def forward(s, x):
        b = LB.apply(s.beta, 1e-6); g = LB.apply(s.gamma, 0.0)
        n = F.conv2d(x * x, g[:, :, None, None], b)
        return x * torch.sqrt(n) if s.inv else x / torch.sqrt(n)
N, M = 64, 96
ga = nn.Sequential(nn.Conv2d(3, N, 5, 2, 2), GDN(N, False), nn.Conv2d(N, N, 5, 2, 2), GDN(N, False),
                   nn.Conv2d(N, N, 5, 2, 2), GDN(N, False), nn.Conv2d(N, M, 5, 2, 2))
gs = nn.Sequential(nn.ConvTranspose2d(M, N, 5, 2, 2, 1), GDN(N, True), nn.ConvTranspose2d(N, N, 5, 2, 2, 1), GDN(N, True),
                   nn.ConvTranspose2d(N, N, 5, 2, 2, 1), GDN(N, True), nn.ConvTranspose2d(N, 3, 5, 2, 2, 1))
nn.init.constant_(gs[-1].bias, 0.45)
params = list(ga.parameters()) + list(gs.parameters())
lr0, steps = 1e-3, 6000
opt = torch.optim.Adam(params, lr=lr0)
def batch():
    out = []
    for _ in range(8):
        im = random.choice(imgs); h, w, _ = im.shape
        y, x = random.randrange(h - 127), random.randrange(w - 127)
        p = im[y:y + 128, x:x + 128]
        if random.random() < 0.5: p = p[:, ::-1]
        if random.random() < 0.5: p = p[::-1]
        out.append(np.ascontiguousarray(p.transpose(2, 0, 1)))
    return torch.from_numpy(np.stack(out))
t0 = time.time(); step = 0; acc = []
while time.time() - t0 < budget:
    prog = max(step / steps, (time.time() - t0) / budget); s = int(prog * steps); warm = steps // 50 + 1
    lr = lr0 * (s + 1) / warm if s < warm else 0.05 * lr0 + 0.5 * (lr0 - 0.05 * lr0) * (1 + math.cos(math.pi * (s - warm) / (steps - warm)))
    for gr in opt.param_groups: gr["lr"] = lr
    x = batch(); y = ga(x); yh = y + (torch.round(y) - y).detach(); xh = gs(yh)
    mse = F.mse_loss(xh, x); loss = 255 * 255 * 20 * mse
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 5.0); opt.step()
    acc.append(mse.item()); step += 1
    if step % 125 == 0:
        m = sum(acc) / len(acc); acc = []
        print(f"step {step} PSNR {10 * math.log10(1 / m):.2f} dB lr {lr:.2e} {step * 8 / (time.time() - t0):.1f} patches/s", flush=True)
