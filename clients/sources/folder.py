"""Recorded RGB-D sequences on disk, read lazily as `engine.core.RGBDFrame`s.

Why: demos, benchmarks and tests replay real captures through the same path as a live camera.
Three common folder layouts are recognised by their files, so `open_sequence(path)` is all a
caller writes:

- **redwood** (Redwood indoor / Open3D reconstruction system): ``color/NNNNN.jpg|png``,
  ``depth/NNNNN.png`` (uint16 millimetres), optional ``intrinsics.json`` (Open3D camera JSON,
  column-major ``intrinsic_matrix``; default: Open3D's PrimeSense 525 / 319.5 / 239.5),
  optional ``trajectory.log`` (camera-to-world, Redwood ``.log``: a line ``i i i+1`` then four
  matrix rows per pose), optional ``rgbd.match`` (``depth/X.png color/Y.jpg`` per line) to pair
  files. ``odometry.log`` is not read: it is not the camera-to-world trajectory.
- **slambook** (gaoxiang12/slambook2 ch5): ``color/N.png``, ``depth/N.pgm`` (16-bit PGM,
  big-endian millimetres; OpenCV byte-swaps it on reading), optional ``pose.txt`` with one
  ``tx ty tz qx qy qz qw`` camera-to-world line per frame in numeric file order, optional
  ``intrinsics.json`` (default: the book's Kinect values fx 518, fy 519, cx 325.5, cy 253.5).
- **tum** (TUM RGB-D benchmark): ``rgb.txt`` and ``depth.txt`` (``timestamp path`` lines,
  ``#`` comments), optional ``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``,
  camera-to-world), depth PNGs in units of 1/5000 m. Colour and depth are paired one-to-one by
  nearest timestamp within 20 ms (as TUM's associate.py); each frame takes the ground-truth pose
  nearest its colour timestamp within 20 ms, else no pose. Intrinsics: ``intrinsics.json`` if
  present, else fx = fy = 525, cx = 319.5, cy = 239.5, which TUM documents as the projection
  of the registered depth for every Freiburg sequence (the per-sensor fr1/fr2/fr3 calibrations
  describe the raw colour camera; pass ``intrinsics=`` to use them).

Frames carry ``frame_id`` = index in the sequence, ``capture_ts`` = the TUM colour timestamp,
or index / NOMINAL_FPS for layouts without timestamps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.core import CameraIntrinsics, Pose, RGBDFrame

NOMINAL_FPS = 30.0
"""Frame rate assumed for capture_ts when a layout stores no timestamps (Redwood, slambook)."""

TUM_MAX_DT = 0.02
"""Seconds: largest colour/depth and colour/ground-truth timestamp gap that still pairs (TUM)."""

_REDWOOD_DEFAULT = CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
_SLAMBOOK_DEFAULT = CameraIntrinsics(640, 480, 518.0, 519.0, 325.5, 253.5)
_TUM_DEFAULT = CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)

_EXPECTED = (
    "expected one of: Redwood/Open3D (color/*.jpg|png + depth/*.png [+ intrinsics.json, trajectory.log]), "
    "slambook (color/N.png + depth/N.pgm [+ pose.txt, intrinsics.json]), "
    "TUM RGB-D (rgb.txt + depth.txt [+ groundtruth.txt])"
)


class SequenceError(ValueError):
    """A folder is not a readable RGB-D sequence; the message says what was expected."""


@dataclass(frozen=True, eq=False)
class FrameFiles:
    """Where one frame lives on disk and what is known about it without reading images.

    pose is camera-to-world or None; timestamp is seconds (capture_ts of the frame).
    """

    color: Path
    depth: Path
    pose: Pose | None
    timestamp: float


@dataclass(frozen=True, eq=False)
class RGBDSequence:
    """A recorded RGB-D sequence: indexable, sized and iterable; images are read on access.

    Attributes:
        root: the folder.
        layout: "redwood", "slambook" or "tum".
        intrinsics: colour camera model (depth is registered to colour in all three layouts).
        depth_scale: raw depth units per metre (1000 Redwood/slambook, 5000 TUM).
        files: one FrameFiles per frame, in capture order.
    """

    root: Path
    layout: str
    intrinsics: CameraIntrinsics
    depth_scale: float
    files: tuple[FrameFiles, ...]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[RGBDFrame]:
        for index in range(len(self.files)):
            yield self[index]

    def __getitem__(self, index: int) -> RGBDFrame:
        """Read frame ``index`` (negative counts from the end): rgb (H, W, 3) uint8 RGB,
        depth (H, W) uint16 raw units (see depth_scale)."""
        if not isinstance(index, int | np.integer):
            raise TypeError(
                f"frame index must be an int, got {type(index).__name__}; iterate or index one by one"
            )
        if not -len(self.files) <= index < len(self.files):
            raise IndexError(f"frame {index} out of range: {self.root} has {len(self.files)} frames")
        index %= len(self.files)
        entry = self.files[index]
        return RGBDFrame(
            frame_id=index,
            rgb=read_color(entry.color),
            depth=read_depth(entry.depth),
            intrinsics=self.intrinsics,
            depth_scale=self.depth_scale,
            pose=entry.pose,
            capture_ts=entry.timestamp,
        )


def open_sequence(path: str | Path, intrinsics: CameraIntrinsics | None = None) -> RGBDSequence:
    """Detect the folder's layout and index its frames (no image is decoded except the first,
    whose size is checked against the intrinsics).

    Args:
        path: the sequence folder.
        intrinsics: overrides the folder's intrinsics.json and the layout default.

    Raises:
        SequenceError: missing folder, unknown layout, unreadable or inconsistent index files.
    """
    root = Path(path)
    if not root.is_dir():
        raise SequenceError(f"{root} is not a folder; {_EXPECTED}")
    if (root / "rgb.txt").is_file() and (root / "depth.txt").is_file():
        sequence = _open_tum(root, intrinsics)
    elif (root / "color").is_dir() and (root / "depth").is_dir():
        if any((root / "depth").glob("*.pgm")):
            sequence = _open_slambook(root, intrinsics)
        elif any((root / "depth").glob("*.png")):
            sequence = _open_redwood(root, intrinsics)
        else:
            raise SequenceError(f"{root / 'depth'} holds no .png or .pgm depth images; {_EXPECTED}")
    else:
        raise SequenceError(f"{root} has no recognisable RGB-D layout; {_EXPECTED}")
    if not sequence.files:
        raise SequenceError(f"{root} ({sequence.layout} layout) contains no frames")
    _check_size(sequence)
    return sequence


def read_color(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any image OpenCV reads (grey is expanded, alpha dropped)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SequenceError(f"cannot read colour image {path} (missing or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path: Path) -> np.ndarray:
    """(H, W) uint16 raw depth from a 16-bit PNG or PGM (OpenCV handles PGM's big-endian order)."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise SequenceError(f"cannot read depth image {path} (missing or not an image)")
    if depth.ndim != 2 or depth.dtype != np.uint16:
        raise SequenceError(
            f"depth image {path} is {depth.dtype} with shape {depth.shape}; expected single-channel 16-bit"
        )
    return depth


def _check_size(sequence: RGBDSequence) -> None:
    first = sequence.files[0]
    color = cv2.imread(str(first.color), cv2.IMREAD_UNCHANGED)
    if color is None:
        raise SequenceError(f"cannot read colour image {first.color} (missing or not an image)")
    height, width = color.shape[:2]
    k = sequence.intrinsics
    if (k.width, k.height) != (width, height):
        raise SequenceError(
            f"{sequence.root}: intrinsics are for {k.width}x{k.height} but {first.color.name} is "
            f"{width}x{height}; put the right intrinsics.json in the folder or pass intrinsics="
        )


# ---------------------------------------------------------------- Redwood / Open3D


def _open_redwood(root: Path, intrinsics: CameraIntrinsics | None) -> RGBDSequence:
    pairs = _redwood_pairs(root)
    poses = _read_log_trajectory(root / "trajectory.log", len(pairs))
    files = tuple(
        FrameFiles(color, depth, poses[i], i / NOMINAL_FPS) for i, (color, depth) in enumerate(pairs)
    )
    k = intrinsics or read_open3d_intrinsics(root / "intrinsics.json") or _REDWOOD_DEFAULT
    return RGBDSequence(root, "redwood", k, 1000.0, files)


def _redwood_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(color, depth) paths in frame order, from rgbd.match when present, else matching stems."""
    match = root / "rgbd.match"
    if match.is_file():
        pairs = []
        for number, line in enumerate(match.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise SequenceError(f"{match}:{number}: expected 'depth/X.png color/Y.jpg', got {line!r}")
            pairs.append((root / parts[1], root / parts[0]))
        return pairs
    colors = {p.stem: p for p in (root / "color").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    depths = {p.stem: p for p in (root / "depth").glob("*.png")}
    if set(colors) != set(depths):
        odd = sorted(set(colors) ^ set(depths))[:5]
        raise SequenceError(
            f"{root}: color/ and depth/ hold different frame names (e.g. {odd}); "
            "name them alike or add an rgbd.match file pairing them"
        )
    return [(colors[stem], depths[stem]) for stem in sorted(depths, key=_natural_key)]


def _read_log_trajectory(path: Path, num_frames: int) -> list[Pose | None]:
    """Camera-to-world pose per frame from a Redwood ``.log`` file; None where it has none."""
    poses: list[Pose | None] = [None] * num_frames
    if not path.is_file():
        return poses
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) % 5:
        raise SequenceError(
            f"{path}: {len(lines)} lines is not a multiple of 5 (one 'i j k' line + 4 rows per pose)"
        )
    for start in range(0, len(lines), 5):
        try:
            index = int(lines[start].split()[0])
            matrix = np.array([[float(v) for v in row.split()] for row in lines[start + 1 : start + 5]])
        except (ValueError, IndexError) as error:
            raise SequenceError(f"{path}:{start + 1}: cannot parse pose block ({error})") from error
        if matrix.shape != (4, 4):
            raise SequenceError(f"{path}:{start + 2}: pose rows must have 4 numbers each")
        if not 0 <= index < num_frames:
            raise SequenceError(f"{path}: pose for frame {index} but the folder has {num_frames} frames")
        poses[index] = Pose(matrix)
    return poses


# ---------------------------------------------------------------- slambook


def _open_slambook(root: Path, intrinsics: CameraIntrinsics | None) -> RGBDSequence:
    depths = {p.stem: p for p in (root / "depth").glob("*.pgm")}
    colors = {p.stem: p for p in (root / "color").glob("*.png")}
    missing = sorted(set(depths) - set(colors), key=_natural_key)
    if missing:
        raise SequenceError(f"{root}: depth/{missing[0]}.pgm has no color/{missing[0]}.png")
    stems = sorted(depths, key=_natural_key)
    poses: list[Pose | None] = [None] * len(stems)
    pose_file = root / "pose.txt"
    if pose_file.is_file():
        rows = _read_numeric_rows(pose_file, 7)
        if len(rows) != len(stems):
            raise SequenceError(
                f"{pose_file} has {len(rows)} poses for {len(stems)} frames; expected one per frame"
            )
        poses = [_pose_from_tq(row[0:3], row[3:7]) for row in rows]
    files = tuple(
        FrameFiles(colors[stem], depths[stem], poses[i], i / NOMINAL_FPS) for i, stem in enumerate(stems)
    )
    k = intrinsics or read_open3d_intrinsics(root / "intrinsics.json") or _SLAMBOOK_DEFAULT
    return RGBDSequence(root, "slambook", k, 1000.0, files)


# ---------------------------------------------------------------- TUM RGB-D


def _open_tum(root: Path, intrinsics: CameraIntrinsics | None) -> RGBDSequence:
    rgb_ts, rgb_paths = _read_tum_list(root / "rgb.txt")
    depth_ts, depth_paths = _read_tum_list(root / "depth.txt")
    pairs = _associate(rgb_ts, depth_ts, TUM_MAX_DT)
    gt_ts = np.zeros(0)
    gt_rows = np.zeros((0, 8))
    groundtruth = root / "groundtruth.txt"
    if groundtruth.is_file():
        gt_rows = np.asarray(_read_numeric_rows(groundtruth, 8), dtype=np.float64).reshape(-1, 8)
        order = np.argsort(gt_rows[:, 0], kind="stable")
        gt_rows = gt_rows[order]
        gt_ts = gt_rows[:, 0]
    files = []
    for i, j in pairs:
        pose = None
        g = _nearest(gt_ts, rgb_ts[i])
        if g is not None and abs(gt_ts[g] - rgb_ts[i]) <= TUM_MAX_DT:
            pose = _pose_from_tq(gt_rows[g, 1:4], gt_rows[g, 4:8])
        files.append(FrameFiles(root / rgb_paths[i], root / depth_paths[j], pose, float(rgb_ts[i])))
    k = intrinsics or read_open3d_intrinsics(root / "intrinsics.json") or _TUM_DEFAULT
    return RGBDSequence(root, "tum", k, 5000.0, tuple(files))


def _read_tum_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """((N,) float64 timestamps, N relative paths) sorted by time, from a TUM ``timestamp path`` file."""
    stamps: list[float] = []
    names: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        try:
            stamps.append(float(parts[0]))
            names.append(parts[1])
        except (ValueError, IndexError) as error:
            raise SequenceError(f"{path}:{number}: expected 'timestamp path', got {line!r}") from error
    order = np.argsort(stamps, kind="stable")
    return np.asarray(stamps, dtype=np.float64)[order], [names[i] for i in order]


def _associate(a: np.ndarray, b: np.ndarray, max_dt: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) of sorted timestamps a[i], b[j] within max_dt, closest first.

    Same greedy rule as TUM's associate.py; returned in order of a.
    """
    if a.size == 0 or b.size == 0:
        return []
    candidates = []
    for i, t in enumerate(a):
        lo = int(np.searchsorted(b, t - max_dt, side="left"))
        hi = int(np.searchsorted(b, t + max_dt, side="right"))
        for j in range(lo, hi):
            candidates.append((abs(b[j] - t), i, j))
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def _nearest(sorted_ts: np.ndarray, t: float) -> int | None:
    """Index of the entry of sorted_ts nearest to t, or None when empty."""
    if sorted_ts.size == 0:
        return None
    j = int(np.searchsorted(sorted_ts, t))
    if j == 0:
        return 0
    if j == sorted_ts.size:
        return j - 1
    return j if sorted_ts[j] - t < t - sorted_ts[j - 1] else j - 1


# ---------------------------------------------------------------- shared parsing


def read_open3d_intrinsics(path: Path) -> CameraIntrinsics | None:
    """Open3D camera JSON (width, height, column-major 3x3 intrinsic_matrix), or None if absent."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        k = np.asarray(data["intrinsic_matrix"], dtype=np.float64).reshape(3, 3, order="F")
        return CameraIntrinsics.from_matrix(k, int(data["width"]), int(data["height"]))
    except (ValueError, KeyError, TypeError) as error:
        raise SequenceError(
            f"{path}: not an Open3D camera JSON ({error}); expected width, height and a 9-number "
            "column-major intrinsic_matrix"
        ) from error


def _read_numeric_rows(path: Path, width: int) -> list[list[float]]:
    """Whitespace-separated rows of ``width`` numbers; blank lines and '#' comments skipped."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            row = [float(v) for v in text.split()]
        except ValueError as error:
            raise SequenceError(f"{path}:{number}: not numbers: {line!r}") from error
        if len(row) != width:
            raise SequenceError(f"{path}:{number}: expected {width} numbers, got {len(row)}")
        rows.append(row)
    return rows


def _pose_from_tq(t: list[float] | np.ndarray, q: list[float] | np.ndarray) -> Pose:
    """Camera-to-world Pose from translation (3,) and unit quaternion (qx, qy, qz, qw)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    matrix = np.eye(4)
    matrix[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    matrix[:3, 3] = t
    return Pose(matrix)


def _natural_key(stem: str) -> tuple[int, int | str]:
    """Sort numeric names by value (2 before 10), others alphabetically after them."""
    return (0, int(stem)) if stem.isdigit() else (1, stem)
