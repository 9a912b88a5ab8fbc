"""Make the real-data ground truth of bench.real_accuracy (instance masks), semi-automatically.

    python -m bench.annotate_real_gt [--data ../shared/data/rgbd]

Method (per frame; every choice a human made lives in bench/data/real_gt/annotations.json):
1. Support planes: Open3D RANSAC (segment_plane, 12 mm) is run repeatedly on the back-projected
   depth; the planes the annotator names by a pixel on them (a table top, the floor, a wall) are
   removed (points within `plane_band_m` of them, or below/behind them).
2. The annotator draws a box around each object and a seed pixel on it; the object is the
   8-connected component of the above-plane pixels inside the box that holds the seed. (A first
   try clustered all above-plane points with Open3D DBSCAN; touching objects merged into one
   cluster far too often, and the box is the annotator's judgement of where the object ends.)
3. Hand corrections from the JSON, in order: `and` polygons (keep only inside: splits touching
   objects, e.g. a can standing on another), `or` polygons (add what depth missed: dark,
   shiny or transparent surfaces, shadows), `minus` (remove other named objects of the frame).
4. Clean-up: close 5x5, fill enclosed holes, keep the component under the seed.
5. Colour refinement (unless `"grabcut": false`): OpenCV GrabCut with a trimap around the mask
   (eroded 4 px = sure object, +-8 px band = probable, beyond = sure background), which moves
   the outline from the depth silhouette (offset by colour/depth misregistration and RealSense
   shadows) onto the colour edge. `and`/`minus` corrections are applied again afterwards.
   The mask is then clipped to the box (+4 px); bowls take their convex hull (`"hull": true`:
   the inside of a bowl is at table height, below the plane band, but it is the bowl).
6. Nothing here is the benchmark's segmenter: the default model never sees these boxes, seeds
   or polygons, but steps 1-2 are related to the plane + cluster baseline (said in the README).
7. Overlaps go to the smaller mask (the object in front, e.g. a marker in a mug).

Written: <sequence>/<frame>.png (uint8 label map, 0 = not annotated, k = object k of the index),
index.json (objects and their names per frame), contact_<sequence>.png (every outline over its
image, for review). The annotator reviewed the contact sheets and added corrections until every
outline followed the object; see bench/data/real_gt/README.md for the known limits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d

from bench.real_gt import GT_DIR, default_data_dir
from clients.sources.folder import open_sequence


def _points(depth: np.ndarray, k) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    return v, u, np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], 1)


def _planes(pts: np.ndarray, index: np.ndarray, seeds: list[list[int]], n_tries: int = 6) -> list[np.ndarray]:
    """Sequential RANSAC on every 4th point; the plane (a, b, c, d; camera on the positive side)
    each seed pixel lies on (within 15 mm), first found first."""
    o3d.utility.random.seed(0)
    rest = np.arange(0, len(pts), 4)
    found = []
    for _ in range(n_tries):
        if rest.size < 500:
            break
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts[rest]))
        plane, inl = cloud.segment_plane(0.012, 3, 1000)
        plane = np.asarray(plane)
        found.append(-plane if plane[3] < 0 else plane)
        rest = np.delete(rest, np.asarray(inl))
    out = []
    for x, y in seeds:
        i = index[y, x]
        hit = [p for p in found if i >= 0 and abs(pts[i] @ p[:3] + p[3]) < 0.015]
        if not hit:
            raise SystemExit(f"plane seed ({x}, {y}) is on no RANSAC plane: move it onto the plane")
        out.append(hit[0])
    return out


def _polygon(shape, poly) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.asarray(poly, np.int32).reshape(-1, 2)], 1)
    return m.astype(bool)


def _fill_and_keep(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    if not mask.any():
        return mask
    mask = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)
    n, lab = cv2.connectedComponents((~mask).view(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    enclosed = ~np.isin(lab, border) & ~mask
    mask = mask | enclosed
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    x, y = seed
    keep = lab[y, x] if lab[y, x] > 0 else int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1
    return lab == keep


def _grabcut(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inner = cv2.erode(mask.view(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    outer = cv2.dilate(mask.view(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
    gc = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    gc[outer] = cv2.GC_PR_BGD
    gc[mask] = cv2.GC_PR_FGD
    gc[inner] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def annotate_frame(frame, spec: dict, defaults: dict) -> tuple[np.ndarray, list[str]]:
    depth = frame.depth_m
    h, w = depth.shape
    v, u, pts = _points(depth, frame.intrinsics)
    index = np.full((h, w), -1, np.int64)
    index[v, u] = np.arange(len(pts))
    band = spec.get("plane_band_m", defaults["plane_band_m"])
    keep = np.ones(len(pts), bool)
    for plane in _planes(pts, index, spec["planes"]):
        keep &= pts @ plane[:3] + plane[3] > band
    keep &= pts[:, 2] < spec.get("max_depth_m", defaults["max_depth_m"])
    above = np.zeros((h, w), bool)
    above[v[keep], u[keep]] = True

    masks: dict[str, np.ndarray] = {}
    for obj in spec["objects"]:
        x, y = obj["seed"]
        x0, y0, x1, y1 = obj["box"]
        inside = np.zeros((h, w), bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = above[y0 : y1 + 1, x0 : x1 + 1]
        # an opening cuts the thin bridges that depth noise on a grazing table top makes
        inside = cv2.morphologyEx(inside.view(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)).astype(
            bool
        )
        n, comp = cv2.connectedComponents(inside.view(np.uint8), connectivity=8)
        r = 8
        win = comp[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        ids = win[win > 0]
        m = comp == np.bincount(ids).argmax() if ids.size else np.zeros((h, w), bool)
        if obj.get("whole_box"):
            m = inside
        for poly in obj.get("and", []):
            m &= _polygon((h, w), poly)
        for poly in obj.get("or", []):
            m |= _polygon((h, w), poly)
        for other in obj.get("minus", []):
            m &= ~masks[other]
        m = _fill_and_keep(m, (x, y))
        if m.any() and obj.get("grabcut", spec.get("grabcut", True)):
            m = _grabcut(frame.rgb, m)
            for poly in obj.get("and", []):
                m &= _polygon((h, w), poly)
            for other in obj.get("minus", []):
                m &= ~masks[other]
            for poly in obj.get("or_after", []):
                m |= _polygon((h, w), poly)
            m = _fill_and_keep(m, (x, y))
        m[: max(0, y0 - 4)] = False  # the annotator's box (+4 px) bounds the object
        m[y1 + 5 :] = False
        m[:, : max(0, x0 - 4)] = False
        m[:, x1 + 5 :] = False
        if obj.get("hull") and m.any():
            hull = cv2.convexHull(cv2.findNonZero(m.view(np.uint8)))
            m = m | _polygon((h, w), hull.reshape(-1, 2))
            for other in obj.get("minus", []):
                m &= ~masks[other]
        for poly in obj.get("cut", []):
            m &= ~_polygon((h, w), poly)
        if not m.any():
            print(f"  WARNING {obj['name']}: empty mask (no cluster under the seed; add an 'or' polygon)")
        masks[obj["name"]] = m
    names = [o["name"] for o in spec["objects"]]
    labels = np.zeros((h, w), np.uint8)
    for k in np.argsort([-masks[n].sum() for n in names], kind="stable"):  # smaller masks win overlaps
        labels[masks[names[k]]] = k + 1
    return labels, names


def contact_sheet(frames: list, label_maps: list[np.ndarray], names: list[list[str]], path: Path) -> None:
    """Every object's outline (and its id) over its image, frames in a grid."""
    tiles = []
    rng = np.random.default_rng(1)
    for frame, labels, objs in zip(frames, label_maps, names, strict=True):
        img = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR).copy()
        for k in range(1, len(objs) + 1):
            m = (labels == k).astype(np.uint8)
            colour = tuple(int(c) for c in rng.integers(60, 256, 3))
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(img, contours, -1, colour, 2)
            if m.any():
                d = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
                y, x = divmod(int(np.argmax(d)), m.shape[1])
                cv2.putText(img, str(k), (x - 6, y + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
                cv2.putText(img, str(k), (x - 6, y + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 1)
        tiles.append(img)
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + 2]) for i in range(0, len(tiles), 2)]
    # a 256-colour palette keeps the sheet small in the repository (outlines stay exact)
    from PIL import Image

    sheet = cv2.cvtColor(np.vstack(rows), cv2.COLOR_BGR2RGB)
    Image.fromarray(sheet).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="the shared rgbd folder")
    parser.add_argument("--only", default=None, help="one sequence")
    args = parser.parse_args(argv)
    data = args.data or default_data_dir()
    spec = json.loads((GT_DIR / "annotations.json").read_text())
    index = {"method": "bench/annotate_real_gt.py (see its docstring and README.md here)", "sequences": {}}
    if (GT_DIR / "index.json").exists():
        index = json.loads((GT_DIR / "index.json").read_text())
    for seq_name, seq_spec in spec["sequences"].items():
        if args.only and seq_name != args.only:
            continue
        seq = open_sequence(data / seq_name)
        frames, maps, names, entries = [], [], [], []
        out_dir = GT_DIR / seq_name
        out_dir.mkdir(parents=True, exist_ok=True)
        for fspec in seq_spec["frames"]:
            frame = seq[fspec["index"]]
            labels, objs = annotate_frame(frame, fspec, spec["defaults"])
            cv2.imwrite(str(out_dir / f"{fspec['name']}.png"), labels)
            frames.append(frame)
            maps.append(labels)
            names.append(objs)
            entries.append({"frame": fspec["name"], "index": fspec["index"], "objects": objs})
            print(seq_name, fspec["name"], [(n, int((labels == k + 1).sum())) for k, n in enumerate(objs)])
        index["sequences"][seq_name] = {"frames": entries}
        contact_sheet(frames, maps, names, GT_DIR / f"contact_{seq_name}.png")
    (GT_DIR / "index.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    main()
