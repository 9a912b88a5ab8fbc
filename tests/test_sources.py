"""clients.sources.folder on the three real shared sequences and on TUM / edge-case folders built
from their frames in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from clients.sources.folder import SequenceError, open_sequence
from engine.core import CameraIntrinsics, Pose, RGBDFrame

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd"
LIVINGROOM = DATA / "livingroom1_micro"
PRIMESENSE = DATA / "livingroom_primesense5"
SLAMBOOK = DATA / "kinect_slambook5"


def reprojection_residual(a: RGBDFrame, b: RGBDFrame, stride: int = 4) -> float:
    """Median |depth difference| (m) when b's depth is moved into a's camera with the two poses.

    Small only if the poses really are camera-to-world and belong to these frames.
    """
    k = b.intrinsics
    v, u = np.mgrid[0 : k.height : stride, 0 : k.width : stride]
    z = b.depth_m[v, u]
    ok = z > 0
    cam_b = np.stack([(u[ok] - k.cx) * z[ok] / k.fx, (v[ok] - k.cy) * z[ok] / k.fy, z[ok]], axis=1)
    cam_a = a.pose.inverse().transform(b.pose.transform(cam_b))
    front = cam_a[:, 2] > 0.1
    cam_a = cam_a[front]
    ua = np.round(cam_a[:, 0] * k.fx / cam_a[:, 2] + k.cx).astype(int)
    va = np.round(cam_a[:, 1] * k.fy / cam_a[:, 2] + k.cy).astype(int)
    inside = (ua >= 0) & (ua < k.width) & (va >= 0) & (va < k.height)
    za = a.depth_m[va[inside], ua[inside]]
    seen = za > 0
    return float(np.median(np.abs(za[seen] - cam_a[inside][seen, 2])))


def test_redwood_livingroom_loads_with_its_intrinsics_and_trajectory() -> None:
    seq = open_sequence(LIVINGROOM)

    assert seq.layout == "redwood" and len(seq) == 211
    assert seq.intrinsics == CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
    frame = seq[1]
    assert frame.frame_id == 1 and frame.depth_scale == 1000.0
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (480, 640) and frame.depth.dtype == np.uint16
    # trajectory.log, block "1 1 2"
    np.testing.assert_allclose(
        frame.pose.matrix[:3],
        [
            [0.99999139, -0.00001393, 0.00415030, 0.00118646],
            [-0.00003622, 0.99992698, 0.01208406, -0.02351636],
            [-0.00415016, -0.01208411, 0.99991837, -0.00144057],
        ],
    )
    np.testing.assert_allclose(seq[0].pose.matrix, np.eye(4), atol=1e-8)
    valid = frame.depth_m[frame.depth_m > 0]
    assert valid.size > 0.9 * frame.depth.size and 0.3 < np.median(valid) < 5.0
    assert seq[-1].frame_id == 210 and seq.files[-1].color.name == "00210.jpg"
    assert seq[2].capture_ts > seq[1].capture_ts
    assert reprojection_residual(seq[0], seq[20]) < 0.02


def test_colour_is_rgb_order_like_open3d_reads_it() -> None:
    frame = open_sequence(LIVINGROOM)[5]
    reference = np.asarray(o3d.io.read_image(str(LIVINGROOM / "color" / "00005.jpg")))
    assert (
        np.mean(np.abs(frame.rgb.astype(int) - reference.astype(int))) < 2.0
    )  # JPEG decoders may differ by 1


def test_primesense_uses_rgbd_match_and_trajectory_not_odometry() -> None:
    seq = open_sequence(PRIMESENSE)

    assert seq.layout == "redwood" and len(seq) == 5
    assert [f.color.name for f in seq.files] == [f"{i:05d}.jpg" for i in range(5)]
    np.testing.assert_allclose(
        seq[0].pose.translation, [-0.31057997014702826, 0.5730122438481298, 2.1264800183565487]
    )
    frame = seq[0]
    assert np.count_nonzero(frame.depth[:, 0]) == 0  # the sensor's zero border
    assert 0.3 < np.median(frame.depth_m[frame.depth_m > 0]) < 5.0
    assert reprojection_residual(seq[0], seq[4]) < 0.03


def test_slambook_big_endian_pgm_depth_and_quaternion_poses() -> None:
    seq = open_sequence(SLAMBOOK)

    assert seq.layout == "slambook" and len(seq) == 5
    assert seq.intrinsics == CameraIntrinsics(640, 480, 518.0, 519.0, 325.5, 253.5)
    frame = seq[0]
    raw = (SLAMBOOK / "depth" / "1.pgm").read_bytes()
    header_end = raw.index(b"\n") + 1  # "P5 640 480 65535\n"
    big_endian = np.frombuffer(raw[header_end:], dtype=">u2").reshape(480, 640)
    np.testing.assert_array_equal(frame.depth, big_endian)
    assert 0.5 < np.median(frame.depth_m[frame.depth_m > 0]) < 6.0
    # pose.txt line 1: -0.228993 0.00645704 0.0287837 -0.0004327 -0.113131 -0.0326832 0.993042
    np.testing.assert_allclose(frame.pose.translation, [-0.228993, 0.00645704, 0.0287837])
    q = np.array([-0.0004327, -0.113131, -0.0326832, 0.993042])
    angle = 2 * np.arccos(q[3] / np.linalg.norm(q))
    assert np.degrees(np.arccos((np.trace(frame.pose.rotation) - 1) / 2)) == pytest.approx(
        np.degrees(angle), abs=1e-4
    )
    assert frame.pose.rotation[0, 2] == pytest.approx(
        2 * (q[0] * q[2] + q[1] * q[3]) / np.dot(q, q), abs=1e-6
    )
    # real Kinect, 23 cm baseline: camera-to-world lines up to a few cm, the inverse reading does not
    residual = reprojection_residual(seq[3], seq[4])
    assert residual < 0.05
    inverted = [
        RGBDFrame(f.frame_id, f.rgb, f.depth, f.intrinsics, f.depth_scale, f.pose.inverse())
        for f in (seq[3], seq[4])
    ]
    assert reprojection_residual(*inverted) > 5 * residual


def test_iteration_length_and_indexing_agree() -> None:
    seq = open_sequence(PRIMESENSE)
    frames = list(seq)
    assert [f.frame_id for f in frames] == list(range(len(seq)))
    np.testing.assert_array_equal(frames[3].depth, seq[3].depth)
    np.testing.assert_array_equal(seq[-1].depth, seq[4].depth)
    with pytest.raises(IndexError, match="has 5 frames"):
        seq[5]
    with pytest.raises(TypeError, match="must be an int"):
        seq[1:3]


def quaternion(rotation: np.ndarray) -> np.ndarray:
    """(qx, qy, qz, qw) of a rotation matrix (Shepperd's method)."""
    m = rotation
    trace = np.trace(m)
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        return np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4])
    i = int(np.argmax(np.diag(m)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * np.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
    q = np.zeros(4)
    q[i] = s / 4
    q[j] = (m[j, i] + m[i, j]) / s
    q[k] = (m[k, i] + m[i, k]) / s
    q[3] = (m[k, j] - m[j, k]) / s
    return q


def write_tum_folder(root: Path, source: list[RGBDFrame]) -> list[float]:
    """A TUM-layout copy of ``source`` frames; returns the colour timestamps.

    Depth is re-encoded at 5000 units per metre; depth and ground truth come on their own clocks
    (depth 7 ms late, ground truth every frame at +4 ms with a wrong decoy pose at +12 ms), and
    there is one extra unmatched depth image, a colour image with no depth and a frame with no
    ground truth near it.
    """
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    t0 = 1305031102.175304
    rgb_lines = ["# color images", "# timestamp filename"]
    depth_lines = ["# depth maps"]
    gt_lines = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
    stamps = []
    for i, frame in enumerate(source):
        t = t0 + i / 30.0
        stamps.append(t)
        cv2.imwrite(str(root / "rgb" / f"{t:.6f}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        td = t + 0.007
        cv2.imwrite(
            str(root / "depth" / f"{td:.6f}.png"), (frame.depth.astype(np.uint32) * 5).astype(np.uint16)
        )
        depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
        if i == 2:
            continue  # no ground truth within 20 ms of this frame
        tx, ty, tz = frame.pose.translation
        qx, qy, qz, qw = quaternion(frame.pose.rotation)
        gt_lines.append(f"{t + 0.004:.4f} {tx:.9f} {ty:.9f} {tz:.9f} {qx:.9f} {qy:.9f} {qz:.9f} {qw:.9f}")
        gt_lines.append(f"{t + 0.012:.4f} 9 9 9 0 0 0 1")
    lonely = t0 + 10.0
    cv2.imwrite(str(root / "depth" / "lonely.png"), source[0].depth)
    depth_lines.append(f"{lonely:.6f} depth/lonely.png")
    cv2.imwrite(str(root / "rgb" / "orphan.png"), cv2.cvtColor(source[0].rgb, cv2.COLOR_RGB2BGR))
    rgb_lines.insert(3, f"{t0 - 5.0:.6f} rgb/orphan.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    return stamps


def test_tum_layout_associates_by_timestamp_and_scales_depth(tmp_path: Path) -> None:
    source = [open_sequence(LIVINGROOM)[i] for i in (0, 30, 60, 90)]
    stamps = write_tum_folder(tmp_path / "rgbd_dataset_freiburg1_xyz", source)

    seq = open_sequence(tmp_path / "rgbd_dataset_freiburg1_xyz")

    assert seq.layout == "tum" and len(seq) == 4 and seq.depth_scale == 5000.0
    assert seq.intrinsics == CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
    for i, (frame, original) in enumerate(zip(seq, source, strict=True)):
        assert frame.capture_ts == pytest.approx(stamps[i], abs=1e-6)
        np.testing.assert_array_equal(frame.depth_m, original.depth_m)
        np.testing.assert_array_equal(frame.rgb, original.rgb)  # PNG is lossless
        if i == 2:
            assert frame.pose is None
        else:
            np.testing.assert_allclose(frame.pose.matrix, original.pose.matrix, atol=1e-6)


def test_tum_intrinsics_json_and_explicit_intrinsics_override_the_default(tmp_path: Path) -> None:
    source = [open_sequence(LIVINGROOM)[0]]
    write_tum_folder(tmp_path, source)
    fr1 = {"width": 640, "height": 480, "intrinsic_matrix": [517.3, 0, 0, 0, 516.5, 0, 318.6, 255.3, 1]}
    (tmp_path / "intrinsics.json").write_text(json.dumps(fr1))

    assert open_sequence(tmp_path).intrinsics == CameraIntrinsics(640, 480, 517.3, 516.5, 318.6, 255.3)
    mine = CameraIntrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)
    assert open_sequence(tmp_path, intrinsics=mine).intrinsics == mine


def copy_redwood(tmp_path: Path, frames: int = 3) -> Path:
    root = tmp_path / "redwood"
    (root / "color").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(frames):
        shutil.copy(LIVINGROOM / "color" / f"{i:05d}.jpg", root / "color")
        shutil.copy(LIVINGROOM / "depth" / f"{i:05d}.png", root / "depth")
    return root


def test_redwood_without_intrinsics_or_trajectory_uses_defaults_and_no_pose(tmp_path: Path) -> None:
    seq = open_sequence(copy_redwood(tmp_path))
    assert len(seq) == 3 and seq.intrinsics.fx == 525.0
    assert all(frame.pose is None for frame in seq)


def test_unknown_or_missing_layouts_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(SequenceError, match="is not a folder.*TUM RGB-D"):
        open_sequence(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(SequenceError, match="no recognisable RGB-D layout.*Redwood.*slambook.*TUM"):
        open_sequence(tmp_path)


def test_inconsistent_folders_raise_clear_errors(tmp_path: Path) -> None:
    root = copy_redwood(tmp_path)
    (root / "depth" / "00002.png").unlink()
    with pytest.raises(SequenceError, match="different frame names.*rgbd.match"):
        open_sequence(root)

    root = copy_redwood(tmp_path / "b")
    shutil.copy(LIVINGROOM / "trajectory.log", root)
    with pytest.raises(SequenceError, match="pose for frame 3 but the folder has 3 frames"):
        open_sequence(root)

    root = copy_redwood(tmp_path / "c")
    small = {"width": 320, "height": 240, "intrinsic_matrix": [262.5, 0, 0, 0, 262.5, 0, 159.75, 119.75, 1]}
    (root / "intrinsics.json").write_text(json.dumps(small))
    with pytest.raises(SequenceError, match="intrinsics are for 320x240 but 00000.jpg is 640x480"):
        open_sequence(root)

    root = copy_redwood(tmp_path / "d")
    cv2.imwrite(str(root / "depth" / "00001.png"), np.zeros((480, 640), np.uint8))
    seq = open_sequence(root)
    with pytest.raises(SequenceError, match="expected single-channel 16-bit"):
        seq[1]


def test_frames_round_trip_through_pose_as_camera_to_world() -> None:
    """A world point seen in two frames lands on the same pixel depth: poses are camera-to-world."""
    seq = open_sequence(LIVINGROOM)
    a, b = seq[100], seq[110]
    assert isinstance(a.pose, Pose) and isinstance(b.pose, Pose)
    assert reprojection_residual(a, b) < 0.02
    # the inverse reading (world-to-camera) would not line up
    swapped_a = RGBDFrame(a.frame_id, a.rgb, a.depth, a.intrinsics, a.depth_scale, a.pose.inverse())
    swapped_b = RGBDFrame(b.frame_id, b.rgb, b.depth, b.intrinsics, b.depth_scale, b.pose.inverse())
    assert reprojection_residual(swapped_a, swapped_b) > 2 * reprojection_residual(a, b)
