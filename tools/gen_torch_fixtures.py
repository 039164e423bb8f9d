#!/usr/bin/python3
"""Writes tests/fixtures/torch_reference.safetensors: inputs and PyTorch outputs
for ops whose conventions users compare against (interpolation, GELU, label
smoothing, CTC 'mean', transposed-conv geometry). Run with Debian's python3-torch:

    /usr/bin/python3 tools/gen_torch_fixtures.py

The file is committed so the test needs no PyTorch; PyTorch is never used at run time.
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
T = {}

def put(name, t):
    T[name] = t.detach().contiguous()

x = torch.randn(3, 7)
put("gelu.x", x); put("gelu.out", F.gelu(x, approximate="tanh"))
x = torch.randn(1, 2, 3, 4)
put("bilinear_up.x", x); put("bilinear_up.out", F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=False))
x = torch.randn(1, 2, 7, 5)
put("bilinear_down.x", x); put("bilinear_down.out", F.interpolate(x, size=(3, 2), mode="bilinear", align_corners=False))
x = torch.randn(1, 2, 3, 2)
put("nearest.x", x); put("nearest.out", F.interpolate(x, size=(7, 5), mode="nearest"))
x = torch.randn(4, 6)
put("log_softmax.x", x); put("log_softmax.out", F.log_softmax(x, 1))
x = torch.randn(5, 4); tgt = torch.tensor([0, 1, 3, 2, 1])
put("ce_smooth.x", x); put("ce_smooth.target", tgt)
put("ce_smooth.out", F.cross_entropy(x, tgt, ignore_index=1, label_smoothing=0.2).reshape(1))
lp = F.log_softmax(torch.randn(8, 2, 5), 2); tg = torch.tensor([[1, 2, 2, 4], [3, 1, 0, 0]])
lens = torch.tensor([[8, 4], [6, 2]])
put("ctc.x", lp); put("ctc.target", tg); put("ctc.lengths", lens)
put("ctc.out", F.ctc_loss(lp, tg, lens[:, 0], lens[:, 1], blank=0, reduction="mean").reshape(1))
x = torch.randn(2, 3, 4, 5); w = torch.randn(3, 2, 5, 5)
put("conv_transpose.x", x); put("conv_transpose.w", w)
put("conv_transpose.out", F.conv_transpose2d(x, w, stride=2, padding=2, output_padding=1))
x = torch.randn(2, 3, 4, 4); beta = torch.rand(3) + 0.5; gamma = torch.rand(3, 3) * 0.3
put("gdn.x", x); put("gdn.beta", beta); put("gdn.gamma", gamma)
put("gdn.out", x / torch.sqrt(F.conv2d(x * x, gamma.reshape(3, 3, 1, 1), beta)))
x = torch.randn(4, 5); t = torch.randn(4, 5)
put("smooth_l1.x", x); put("smooth_l1.target", t); put("smooth_l1.out", F.smooth_l1_loss(x, t, beta=0.7).reshape(1))
x = torch.randn(3, 4); t = torch.rand(3, 4)
put("bce.x", x); put("bce.target", t); put("bce.out", F.binary_cross_entropy_with_logits(x, t).reshape(1))

dtypes = {torch.float32: "F32", torch.int64: "I64"}
header, blobs, off = {}, [], 0
for name, t in T.items():
    b = t.numpy().tobytes()
    header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
header["__metadata__"] = {"generator": "tools/gen_torch_fixtures.py", "torch": torch.__version__}
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch_reference.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print("wrote", out, off, "bytes of tensors", file=sys.stderr)
