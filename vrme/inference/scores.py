"""A trained model run over one video's feature windows: its per-frame spot score and class
logits. Used by the folds (scoring their test subject) and by prediction on new videos."""

from __future__ import annotations

from typing import Any

import numpy as np

from vrme.config import CLASS_NAMES
from vrme.decoding.decode import stitch_windows
from vrme.interrupt import check as check_interrupt
from vrme.schema import VideoFeatures


def predict_video(model: Any, feats: VideoFeatures, device: Any,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame outputs of one video: ``(spot, logits)``, shapes (n_cov,) and (n_cov, C), for
    the indices covered by its windows ((n_windows + 1) * k/2, after skipping), stitched per
    video (:func:`vrme.decoding.decode.stitch_windows`). The model is put in eval mode."""
    import torch

    model.eval()
    spots, logits = [], []
    with torch.no_grad():
        for b in range(0, len(feats.values), batch_size):
            check_interrupt(f"prediction of {feats.subject}/{feats.video}")
            xb = torch.tensor(feats.values[b:b + batch_size], dtype=torch.float32, device=device)
            s, z = model(xb)
            spots.append(s.float().cpu().numpy())
            logits.append(z.float().cpu().numpy())
    if not spots:
        return np.zeros(0, np.float32), np.zeros((0, len(CLASS_NAMES)), np.float32)
    return (stitch_windows(np.concatenate(spots)).astype(np.float32),
            stitch_windows(np.concatenate(logits)).astype(np.float32))
