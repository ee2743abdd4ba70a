"""A small MTCNN (Zhang et al. 2016) in plain PyTorch: P-Net, R-Net, O-Net, NMS, box regression.

Weights: ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` (state dicts, loaded with
``weights_only=True``); facenet-pytorch's code itself is never imported (it needs torchvision).
The nets were converted from the original Caffe models, which saw images transposed (MATLAB
column-major): the R/O-Net feature maps are therefore flattened in (W, H, C) order.

Output boxes are (x1, y1, x2, y2) and points (5, 2) in photo pixels (pixel centres at integers):
image-left eye, image-right eye, nose tip, image-left and image-right mouth corners.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegcn.errors import ModelFileError
from facegcn.frontend.models import mtcnn_weight_path


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


_NETS: tuple[PNet, RNet, ONet] | None = None
_LOCK = threading.Lock()


def load_mtcnn() -> tuple[PNet, RNet, ONet]:
    global _NETS
    with _LOCK:
        if _NETS is None:
            nets = (PNet(), RNet(), ONet())
            for net, name in zip(nets, ("pnet", "rnet", "onet")):
                path = mtcnn_weight_path(name)
                try:
                    sd = torch.load(path, map_location="cpu", weights_only=True)
                    net.load_state_dict(sd)
                except Exception as exc:  # noqa: BLE001
                    raise ModelFileError(f"cannot load MTCNN weights {path}: {' '.join(str(exc).split())[:200]}") from None
                net.eval()
                for p in net.parameters():
                    p.requires_grad_(False)
            _NETS = nets
    return _NETS


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Greedy non-maximum suppression (MTCNN's "+1" pixel areas). Returns kept indices, best first.
    ``mode="min"`` divides the intersection by the smaller area."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = torch.argsort(scores, descending=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]) + 1).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]) + 1).clamp(min=0)
        inter = w * h
        denom = torch.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return torch.tensor(keep, dtype=torch.long)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    b = boxes.clone()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = torch.maximum(w, h)
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    b = boxes.clone()
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, 0] += reg[:, 0] * w
    b[:, 1] += reg[:, 1] * h
    b[:, 2] += reg[:, 2] * w
    b[:, 3] += reg[:, 3] * h
    return b


def _crops(img: np.ndarray, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop integer boxes (1-based inclusive, MTCNN style) of a uint8 (H,W,3) image with zero
    padding outside the image, resize each to size×size (area interpolation) → (N,3,size,size)
    float 0..255. Only the crops are converted to float (large photos stay uint8)."""
    h, w = img.shape[:2]
    out = []
    for x1, y1, x2, y2 in boxes[:, :4].trunc().long().tolist():
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw < 1 or bh < 1:
            out.append(torch.zeros(3, size, size))
            continue
        canvas = torch.zeros(3, bh, bw)
        sx1, sy1, sx2, sy2 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if sx2 >= sx1 and sy2 >= sy1:
            patch = np.array(img[sy1 - 1 : sy2, sx1 - 1 : sx2], dtype=np.float32)
            canvas[:, sy1 - y1 : sy2 - y1 + 1, sx1 - x1 : sx2 - x1 + 1] = torch.from_numpy(patch).permute(2, 0, 1)
        out.append(F.interpolate(canvas[None], size=(size, size), mode="area")[0])
    return torch.stack(out)


@dataclass(frozen=True)
class MTCNNFace:
    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    points: np.ndarray  # (5, 2)


@torch.no_grad()
def detect_mtcnn(
    pixels: np.ndarray,
    *,
    min_face: float = 20.0,
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
) -> list[MTCNNFace]:
    """Run the three-stage cascade on a uint8 (H,W,3) RGB image. Best score first."""
    pnet, rnet, onet = load_mtcnn()
    pixels = np.asarray(pixels, dtype=np.uint8)
    img = torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(2, 0, 1)
    h, w = pixels.shape[:2]
    m = 12.0 / min_face
    scales, minl = [], min(h, w) * m
    s = m
    while minl >= 12:
        scales.append(s)
        s *= factor
        minl *= factor

    # stage 1: fully convolutional P-Net over the image pyramid
    all_boxes = []
    for scale in scales:
        hs, ws = int(h * scale + 1), int(w * scale + 1)
        x = (F.interpolate(img[None], size=(hs, ws), mode="area") - 127.5) * 0.0078125
        reg, prob = pnet(x)
        p = prob[0, 1]
        ys, xs = torch.nonzero(p >= thresholds[0], as_tuple=True)
        if ys.numel() == 0:
            continue
        score = p[ys, xs]
        r = reg[0][:, ys, xs].T
        q1x = torch.floor((2 * xs.float() + 1) / scale)
        q1y = torch.floor((2 * ys.float() + 1) / scale)
        q2x = torch.floor((2 * xs.float() + 12) / scale)
        q2y = torch.floor((2 * ys.float() + 12) / scale)
        b = torch.stack([q1x, q1y, q2x, q2y], 1)
        keep = nms(b, score, 0.5)
        all_boxes.append(torch.cat([b[keep], score[keep, None], r[keep]], 1))
    if not all_boxes:
        return []
    boxes = torch.cat(all_boxes)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    boxes = _square(_regress(boxes[:, :4], boxes[:, 5:9]))

    # stage 2: R-Net refines 24x24 crops
    out_reg, out_prob = rnet((_crops(pixels, boxes, 24) - 127.5) * 0.0078125)
    score = out_prob[:, 1]
    ok = score > thresholds[1]
    boxes, score, out_reg = boxes[ok], score[ok], out_reg[ok]
    if boxes.shape[0] == 0:
        return []
    keep = nms(boxes, score, 0.7)
    boxes = _square(_regress(boxes[keep], out_reg[keep]))

    # stage 3: O-Net on 48x48 crops gives the final score, box and 5 landmarks
    boxes_t = boxes.trunc()
    out_reg, out_pts, out_prob = onet((_crops(pixels, boxes_t, 48) - 127.5) * 0.0078125)
    score = out_prob[:, 1]
    ok = score > thresholds[2]
    boxes_t, score, out_reg, out_pts = boxes_t[ok], score[ok], out_reg[ok], out_pts[ok]
    if boxes_t.shape[0] == 0:
        return []
    bw = boxes_t[:, 2] - boxes_t[:, 0] + 1
    bh = boxes_t[:, 3] - boxes_t[:, 1] + 1
    px = bw[:, None] * out_pts[:, :5] + boxes_t[:, :1] - 1
    py = bh[:, None] * out_pts[:, 5:] + boxes_t[:, 1:2] - 1
    pts = torch.stack([px, py], dim=2)
    final = _regress(boxes_t, out_reg)
    keep = nms(final, score, 0.7, mode="min")
    faces = []
    for i in keep.tolist():
        b = final[i].numpy().astype(np.float64) - np.array([1.0, 1.0, 1.0, 1.0])  # 1-based -> 0-based
        faces.append(MTCNNFace(box=b, score=float(score[i]), points=pts[i].numpy().astype(np.float64)))
    return faces
