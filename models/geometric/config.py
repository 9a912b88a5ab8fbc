"""Tuning knobs of the geometric segmenter, in one frozen place.

Defaults were chosen on ray-cast scenes with Kinect-like noise (clients/sources/synthetic.py)
and checked on the real Kinect v1 and PrimeSense frames in shared/data; each says what it
trades off so a user with another sensor knows which one to move.
"""

from __future__ import annotations

from dataclasses import dataclass

GRANULARITIES = ("part", "object", "region")
"""Order of the three label maps and of the masks a prediction returns (fine to coarse)."""


@dataclass(frozen=True)
class GeometricConfig:
    """Parameters of the encoder (edges and label maps) and the decoder (prompt lookup).

    Depth discontinuities:
        jump_abs_m, jump_rel, jump_quad, jump_slope: two 4-neighbours are on different surfaces
            when their depth differs by more than jump_abs_m + jump_rel * z + jump_quad * z² +
            jump_slope * (smaller of the neighbouring steps along the line) (z = the nearer depth,
            metres). The z² term follows structured-light quantisation and noise (both grow with
            z²); the slope term keeps floors and table tops seen at grazing angles (which step by
            centimetres per pixel) in one piece.
    Normals and creases:
        work_downsample: edges and label maps are computed at 1/work_downsample resolution
            (valid-aware averaging of depth), which lowers noise and cost; the label maps are then
            upsampled (nearest) to full resolution.
        normal_window: k, the side (working-resolution pixels, odd) of the box window over
            which tangents are summed; normals are compared (k + 1) // 2 pixels to either side.
            Larger k = less noise, thin structures lost.
        crease_noise_z_m: beyond this depth the crease thresholds rise in proportion to z
            (angular noise of a fixed window grows with z for z²-noise sensors).
        convex_deg, concave_deg: normal angle above which a crease is marked. Concave creases
            (LCCP criterion (n_p - n_q) . (x_p - x_q) < 0) separate objects from what they rest
            on, so they use the lower threshold.
        crease_min_px: crease pieces (after the one-pixel dilation, at the working resolution)
            smaller than this are noise peaks and dropped.
    Colour:
        colour_step: 8-bit colour step (max over RGB of the Sobel response / 4, on a blurred
            image) that counts as a "strong" colour edge for the part level.
        colour_levels: steps for the colour-only fallback (part, object, region), decreasing
            sensitivity from fine to coarse.
    Object graph (graph.py):
        cell_px: pieces (surfaces bounded by depth edges, concave creases and strong colour
            edges) are cut into patches by a grid of this many working-resolution pixels, so a
            leak through a gap in a crease line stays local.
        min_patch_px: patches with fewer core pixels have no trustworthy normal.
        merge_concave_deg: adjacent patches meeting concavely still join when their normals are
            within this angle (noise, not a contact).
        merge_chroma: nearly parallel patches join only if their chromaticities (r, g, b over
            r + g + b of the summed colour) differ by less than this (L1).
        piece_concave_deg: patches cut by the grid from one piece stay joined unless they meet
            concavely at more than this angle.
    Label maps:
        min_region_px: components smaller than this (full-resolution pixels) are dissolved into
            their neighbours.
        reassign_max_px: edge pixels up to this far (working-resolution pixels) from a region
            are given to the nearest region (masks are not eroded by the edge width).
        band_radius_px: with depth, a band pixel then joins the region whose local tangent plane
            (of its first core pixel within this many pixels along an axis) it lies closest to.
        part_grow_px: parts grow this many pixels into the edge bands around them.
        hole_max_frac: sensor holes up to this fraction of the image that are surrounded by one
            object join it.
    Support planes and object clusters (support.py):
        support_planes: find the dominant planes (tables, floors, walls) and make every cluster
            of off-plane pixels connected without a depth jump one "object", the LCCP objects of
            graph.py its parts (False, the default for now: the LCCP objects are the objects and
            regions reach across supports, as before; see bench.real_accuracy for both).
        support_max_planes, support_min_frac: at most this many planes, each holding at least this
            fraction of the valid pixels.
        support_band_min_m, support_band_m, support_band_quad: a pixel is on a plane within 3 x
            the plane's RMS residual, clipped to [band_min_m, band_m + band_quad * z²] metres
            (RealSense/Kinect noise grows with z²); objects lose at most this much at their base.
        support_ransac_m, support_iterations, support_stride: RANSAC inlier distance, iterations
            and subsampling (every stride-th valid working pixel, at most support_max_sample of
            them: RANSAC's cost, not its answer, grows with more).
        cluster_jump_m, cluster_jump_quad: neighbours whose depths differ by more than
            jump_m + jump_quad * z² are not connected in a cluster (stricter than jump_*: no
            slope term, so objects side by side separate).
        support_normal_deg: a pixel in a plane's band whose normal is tilted by more than this
            from the plane's is not support (an object's base faces sideways).
        support_grow_m, support_grow_deg: a support piece grows over connected pixels within
            support_grow_m of its plane whose normals are within support_grow_deg of the plane's
            (a real table top bends by centimetres at range; object tops are cut off from it by
            their sides). 0 turns growing off.
        support_piece_frac: of an accepted plane, only connected pieces holding at least this
            fraction of the valid pixels are support (object tops at one height are not).
        support_fringe, support_fringe_px: pixels within support_fringe x the plane band of a
            support plane and within support_fringe_px (working pixels) of its support pixels are
            its noisy skin: clusters do not grow through it (objects standing apart stay apart).
        split_objects, split_min_frac, split_lab: split a cluster where a concave crease and a
            colour change agree (objects.py): pieces between concave creases of at least
            split_min_frac of their cluster, joined again when their median Lab colours differ
            by less than split_lab (8-bit Lab units); the cluster stays the "region" level.
        hybrid, hybrid_inside, hybrid_ratio: (the default, when support_planes is off) keep both
            the LCCP label maps and the support path's, and answer a click with the support
            object when the LCCP mask lies inside it (>= hybrid_inside of its pixels) and covers
            at most hybrid_ratio of it (decoder._hybrid); else with the LCCP masks. Chosen on the
            synthetic tuning seeds and the real calibration frames (bench.real_accuracy).
        cluster_min_px: smaller clusters (full-resolution pixels) are noise and dropped.
        cluster_hole_px: sensor holes this close (working pixels) to a cluster join it.
        prefer_clusters: with support_planes, a cluster's score is raised above its pieces'
            (quality.prefer_clusters), so a click returns the whole object.
    Segment everything (engine/everything.py, when the client sets no threshold):
        everything_iou_thresh, everything_min_area_px: keep masks scoring at least this and of at
            least this many pixels. The scores are a boundary heuristic, not SAM's predicted IoU,
            so SAM's 0.88 keeps almost nothing; these were measured on the real tabletop frames
            (bench.real_accuracy): lower finds more objects with more masks per object. 0.8 was
            chosen on the calibration frames (tabletop5 00000, 00002, 00004): 81 % of their
            objects matched at 2.7 masks per object (0.4: 90 % at 7.1; 0.9: 29 % at 0.8).
    Camera:
        default_focal_px_at_640: focal length assumed (scaled with the width) for frames sent
            without intrinsics.
    Decoder:
        snap_radius_px: a point on a depth hole snaps to the nearest valid-depth pixel this close.
        box_fill: a box prompt picks components with at least this fraction of their area inside.
        mask_fill: a mask prompt picks components with at least this fraction covered by it.
    """

    jump_abs_m: float = 0.02
    jump_rel: float = 0.01
    jump_quad: float = 0.004
    jump_slope: float = 1.5
    normal_window: int = 5
    crease_noise_z_m: float = 2.5
    work_downsample: int = 2
    convex_deg: float = 40.0
    concave_deg: float = 35.0
    crease_min_px: int = 24
    colour_step: int = 28
    colour_levels: tuple[int, int, int] = (14, 24, 40)
    min_region_px: int = 30
    cell_px: int = 12
    min_patch_px: int = 3
    merge_concave_deg: float = 15.0
    merge_chroma: float = 0.06
    piece_concave_deg: float = 40.0
    reassign_max_px: float = 8.0
    band_radius_px: int = 6
    part_grow_px: int = 4
    hole_max_frac: float = 0.02
    snap_radius_px: int = 8
    box_fill: float = 0.5
    mask_fill: float = 0.5
    default_focal_px_at_640: float = 525.0
    support_planes: bool = False
    support_max_planes: int = 3
    support_min_frac: float = 0.08
    support_band_m: float = 0.008
    support_band_min_m: float = 0.004
    support_band_quad: float = 0.004
    support_ransac_m: float = 0.01
    support_iterations: int = 120
    support_stride: int = 7
    support_max_sample: int = 4000
    support_normal_deg: float = 35.0
    support_grow_m: float = 0.04
    support_grow_deg: float = 15.0
    support_piece_frac: float = 0.01
    support_fringe: float = 1.0
    support_fringe_px: int = 9
    split_objects: bool = True
    split_min_frac: float = 0.1
    split_lab: float = 20.0
    hybrid: bool = True
    hybrid_inside: float = 0.8
    hybrid_ratio: float = 0.9
    cluster_min_px: int = 200
    cluster_jump_m: float = 0.008
    cluster_jump_quad: float = 0.004
    cluster_hole_px: float = 2.0
    prefer_clusters: bool = True
    everything_iou_thresh: float = 0.8
    everything_min_area_px: int = 600

    def __post_init__(self) -> None:
        if self.normal_window < 3 or self.normal_window % 2 == 0:
            raise ValueError(f"normal_window must be an odd integer >= 3, got {self.normal_window}")
        if not (0 < self.concave_deg < 180 and 0 < self.convex_deg < 180):
            raise ValueError("crease angles must be in (0, 180) degrees")
