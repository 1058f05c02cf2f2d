"""Camera bias of a descriptor: how often a query's nearest gallery image is from the query's own camera.

The Market1501 protocol leaves out gallery images of the query's person seen by the query's camera, so a
nearest neighbour from the query's own camera is always another person. A descriptor that ignores the camera
would put ~1 / cameras of the nearest neighbours there; one dominated by each camera's look (the synthetic
cameras' colour casts) puts most of them there. ``histogram`` is the colour-histogram matcher.

    python benchmarks/camera_bias.py runs/zoo/val_s20 histogram zoo:hacnn zoo:robustreid_1x
"""
import sys, torch
from robustreid.datasets import load_dataset, labels
from robustreid.evaluate import FeatureExtractor
from robustreid.histogram import histogram_features
from robustreid.metrics import compute_distmat
ds = load_dataset("market1501", sys.argv[1])
(qp, qc), (gp, gc) = labels(ds.query), labels(ds.gallery)
qp, qc, gp, gc = map(torch.as_tensor, (qp, qc, gp, gc))
gallery_cams = len(set(gc.tolist()))
def share(q, g):
    d = compute_distmat(q, g)
    junk = (qp[:, None] == gp[None, :]) & (qc[:, None] == gc[None, :])  # the protocol's exclusion
    d[junk] = float("inf")
    top = d.argmin(1)
    return (gc[top] == qc).float().mean().item()
for name in sys.argv[2:]:
    if name == "histogram":
        q, g = torch.from_numpy(histogram_features(ds.query)), torch.from_numpy(histogram_features(ds.gallery))
    else:
        ex = FeatureExtractor(name)
        q, g = ex([r.img_path for r in ds.query]), ex([r.img_path for r in ds.gallery])
    print(f"{name}: top-1 from the query's own camera {100 * share(q, g):.1f} % (1 / cameras = {100 / gallery_cams:.1f} %)")
