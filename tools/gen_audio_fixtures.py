#!/usr/bin/python3
"""Writes tests/fixtures/audio_reference.safetensors: a fixed signal, its power spectrogram from torch.stft,
the mel filterbank (torchaudio's melscale_fbanks formula, HTK scale, no normalisation, written out here since
Debian has no torchaudio) and the log-mel features, for the front end's reference test. Run with Debian's
python3-torch:

    /usr/bin/python3 tools/gen_audio_fixtures.py

The file is committed so the test needs no PyTorch; PyTorch is never used at run time."""
import json
import math
import os
import struct

import torch

SR, N_FFT, WIN, HOP, N_MELS, F_MIN, F_MAX = 16000, 512, 400, 160, 80, 20.0, 7600.0

g = torch.Generator().manual_seed(3)
t = torch.arange(int(0.3 * SR), dtype=torch.float64) / SR
# a chirp, a steady tone and a little noise: energy across the band, nothing periodic in the frame grid
x = 0.5 * torch.sin(2 * math.pi * (200 * t + 6000 * t * t)) + 0.2 * torch.sin(2 * math.pi * 1234.5 * t)
x = (x + 0.01 * torch.randn(x.shape, generator=g, dtype=torch.float64)).float()

window = torch.hann_window(WIN, periodic=True)
spec = torch.stft(x.double(), N_FFT, hop_length=HOP, win_length=WIN, window=window.double(), center=False,
                  return_complex=True)
power = (spec.abs() ** 2).T.contiguous()  # [frames, bins]


def hz_to_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


n_freqs = N_FFT // 2 + 1
all_freqs = torch.linspace(0, SR // 2, n_freqs, dtype=torch.float64)
m_pts = torch.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), N_MELS + 2, dtype=torch.float64)
f_pts = torch.tensor([mel_to_hz(float(m)) for m in m_pts], dtype=torch.float64)
f_diff = f_pts[1:] - f_pts[:-1]
slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
down = -slopes[:, :-2] / f_diff[:-1]
up = slopes[:, 2:] / f_diff[1:]
fb = torch.clamp(torch.min(down, up), min=0.0).T.contiguous()  # [mels, bins]
log_mel = torch.log(power @ fb.T + 1e-6)

tensors = {"x": x, "power": power.float(), "filterbank": fb.float(), "log_mel": log_mel.float()}
header, blobs, off = {}, [], 0
for name, v in tensors.items():
    b = v.contiguous().numpy().tobytes()
    header[name] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
header["__metadata__"] = {"source": "tools/gen_audio_fixtures.py", "torch": torch.__version__}
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "audio_reference.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(out, {k: list(v.shape) for k, v in tensors.items()})
