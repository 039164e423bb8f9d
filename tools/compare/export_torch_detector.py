"""A YOLOv8-style detector (conv-BN-SiLU stem, C2f-like blocks, an FPN with nearest upsampling, a decoupled
head giving [1, 4 + 80, anchors]) exported with Debian's python3-torch through torch.onnx.export. Its
weights are random (seeded): it exists to check that nncore computes what ONNX Runtime computes, and how
fast, on the graph shapes real exports have.

    /usr/bin/python3 tools/compare/export_torch_detector.py OUT.onnx [SIZE] [WIDTH]

WIDTH 16 is the one compared for speed; tests/data/torch_detector_small.onnx is SIZE 96, WIDTH 4 (small
enough for the repository) with ONNX Runtime's output beside it (tools/compare/make_ort_reference.sh).
"""
import sys

import torch
import torch.nn as nn


def conv(cin, cout, k=3, s=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class C2f(nn.Module):
    def __init__(self, cin, cout, n=1):
        super().__init__()
        h = cout // 2
        self.cv1 = conv(cin, 2 * h, 1)
        self.m = nn.ModuleList(nn.Sequential(conv(h, h), conv(h, h)) for _ in range(n))
        self.cv2 = conv((2 + n) * h, cout, 1)

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(y[-1] + m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Detector(nn.Module):
    def __init__(self, classes=80, w=16):
        super().__init__()
        self.stem = nn.Sequential(conv(3, w, 3, 2), conv(w, 2 * w, 3, 2), C2f(2 * w, 2 * w))
        self.p3 = nn.Sequential(conv(2 * w, 4 * w, 3, 2), C2f(4 * w, 4 * w, 2))
        self.p4 = nn.Sequential(conv(4 * w, 8 * w, 3, 2), C2f(8 * w, 8 * w, 2))
        self.p5 = nn.Sequential(conv(8 * w, 16 * w, 3, 2), C2f(16 * w, 16 * w))
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.f4 = C2f(24 * w, 8 * w)
        self.f3 = C2f(12 * w, 4 * w)
        self.box = nn.ModuleList(nn.Sequential(conv(c, 4 * w), nn.Conv2d(4 * w, 4, 1)) for c in (4 * w, 8 * w))
        self.cls = nn.ModuleList(nn.Sequential(conv(c, 4 * w), nn.Conv2d(4 * w, classes, 1)) for c in (4 * w, 8 * w))

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.pool(self.p5(p4))
        f4 = self.f4(torch.cat([self.up(p5), p4], 1))
        f3 = self.f3(torch.cat([self.up(f4), p3], 1))
        outs = []
        for i, f in enumerate((f3, f4)):
            b = self.box[i](f).flatten(2)
            c = self.cls[i](f).sigmoid().flatten(2)
            outs.append(torch.cat([b, c], 1))
        return torch.cat(outs, 2)


def main():
    out = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 640
    width = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    torch.manual_seed(0)
    model = Detector(w=width).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, as a trained model has
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(model, x, out, opset_version=13, input_names=["images"], output_names=["output0"])
    print("wrote", out, "params", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
