"""An OpenXR headset's head pose and eye gaze (pyopenxr), fused with a head-mounted RGB-D camera.

`OpenXRTracker` opens an OpenXR session: headless when the runtime offers XR_MND_headless (no
rendering, e.g. Monado), else with the OpenGL graphics binding (pyopenxr's GLFW offscreen
context, which needs `pip install glfw PyOpenGL`). It locates the VIEW space (the head) in the
chosen reference space (LOCAL or STAGE) and, with XR_EXT_eye_gaze_interaction, the eye gaze
pose; without that extension (or while the eye tracker reports no valid pose) the head's
forward ray is used as head gaze, and the log says so once.

`OpenXRCameraSource` reads RGB-D frames from a RealSense camera mounted on the headset, gives
each frame the camera's pose (head pose x camera-to-head calibration, converted once to the
protocol's axes by `xr_geometry.protocol_camera_pose`) and turns the gaze ray into a pixel of
that frame (`xr_geometry.gaze_ray_to_pixel`, using the frame's depth).

Without an OpenXR runtime the source fails at start with a message naming what is missing.
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from clients.sources.base import SourceError, SourceFrame, SourceInfo, SourceOptions
from clients.sources.xr_geometry import (
    HeadCameraCalibration,
    camera_pose,
    gaze_ray_to_pixel,
    posef_matrix,
    read_calibration,
)
from engine.core import GazeSample

log = logging.getLogger(__name__)

EYE_GAZE_PROFILE = "/interaction_profiles/ext/eye_gaze_interaction"
EYE_GAZE_PATH = "/user/eyes_ext/input/gaze_ext/pose"
REFERENCE_SPACES = ("local", "stage")

NO_RUNTIME = (
    "no OpenXR runtime: the OpenXR loader found no active runtime ({error}). Install and start one, "
    "e.g. Monado on Linux (`apt install monado-service libopenxr1-monado`, then run `monado-service`; "
    "for a headless test set XRT_COMPOSITOR_NULL=1), SteamVR, or your headset's vendor runtime; or "
    "point XR_RUNTIME_JSON at its manifest (e.g. /usr/share/openxr/1/openxr_monado.json)"
)


@dataclass(frozen=True, eq=False)
class XrSample:
    """Head and gaze at one OpenXR time, in the reference space (OpenXR axes).

    space_from_head: (4, 4) VIEW space located in the reference space.
    gaze_origin, gaze_direction: (3,) the gaze ray (eye gaze, or the head's -Z when eye_gaze is False).
    """

    xr_time_ns: int
    space_from_head: np.ndarray
    gaze_origin: np.ndarray
    gaze_direction: np.ndarray
    eye_gaze: bool


def import_openxr() -> Any:
    try:
        import xr
    except ImportError:
        raise SourceError("pyopenxr is not installed: pip install pyopenxr") from None
    return xr


class OpenXRTracker:
    """An OpenXR session that reports head pose and gaze on each `sample()`."""

    def __init__(self, reference_space: str = "local", application: str = "xrseg") -> None:
        if reference_space not in REFERENCE_SPACES:
            raise SourceError(
                f"reference space {reference_space!r}: choose one of {', '.join(REFERENCE_SPACES)}"
            )
        self._reference = reference_space
        self._application = application
        self._xr: Any = None
        self._instance: Any = None
        self._session: Any = None
        self._graphics: Any = None
        self._context: Any = None
        self._space: Any = None
        self._view_space: Any = None
        self._gaze_space: Any = None
        self._action_set: Any = None
        self._running = False
        self._warned_head_gaze = False
        self.has_eye_gaze = False
        self.headless = False

    def start(self) -> None:
        xr = self._xr = import_openxr()
        try:
            available = {
                e.extension_name.decode() if isinstance(e.extension_name, bytes) else e.extension_name
                for e in xr.enumerate_instance_extension_properties()
            }
        except xr.exception.RuntimeUnavailableError as exc:
            raise SourceError(NO_RUNTIME.format(error=exc)) from None
        except xr.exception.XrException as exc:
            raise SourceError(NO_RUNTIME.format(error=f"{type(exc).__name__}: {exc}")) from None
        self.headless = xr.MND_HEADLESS_EXTENSION_NAME in available
        wanted = (
            [xr.EXT_EYE_GAZE_INTERACTION_EXTENSION_NAME]
            if xr.EXT_EYE_GAZE_INTERACTION_EXTENSION_NAME in available
            else []
        )
        if self.headless:
            wanted.append(xr.MND_HEADLESS_EXTENSION_NAME)
        elif xr.KHR_OPENGL_ENABLE_EXTENSION_NAME in available:
            wanted.append(xr.KHR_OPENGL_ENABLE_EXTENSION_NAME)
        else:
            raise SourceError(
                "the OpenXR runtime offers neither XR_MND_headless nor XR_KHR_opengl_enable; "
                f"its extensions: {', '.join(sorted(available))}"
            )
        try:
            self._instance = xr.create_instance(
                xr.InstanceCreateInfo(
                    application_info=xr.ApplicationInfo(
                        application_name=self._application,
                        application_version=1,
                        engine_name="xrseg",
                        engine_version=1,
                    ),
                    enabled_extension_names=wanted,
                )
            )
            system = xr.get_system(
                self._instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY)
            )
        except xr.exception.FormFactorUnavailableError:
            raise SourceError(
                "the OpenXR runtime runs but no headset is connected (form factor unavailable): "
                "connect and switch on the headset"
            ) from None
        except xr.exception.XrException as exc:
            raise SourceError(f"OpenXR refused to start: {type(exc).__name__}: {exc}") from None
        self.has_eye_gaze = xr.EXT_EYE_GAZE_INTERACTION_EXTENSION_NAME in wanted and self._eye_gaze_supported(
            system
        )
        if not self.has_eye_gaze:
            log.warning(
                "OpenXR: no XR_EXT_eye_gaze_interaction on this runtime/headset: using head gaze "
                "(the head's forward ray) instead of eye gaze"
            )
        self._session = xr.create_session(
            self._instance, xr.SessionCreateInfo(system_id=system, next=self._binding(system))
        )
        kind = xr.ReferenceSpaceType.STAGE if self._reference == "stage" else xr.ReferenceSpaceType.LOCAL
        self._space = xr.create_reference_space(self._session, xr.ReferenceSpaceCreateInfo(kind, xr.Posef()))
        self._view_space = xr.create_reference_space(
            self._session, xr.ReferenceSpaceCreateInfo(xr.ReferenceSpaceType.VIEW, xr.Posef())
        )
        if self.has_eye_gaze:
            self._gaze_space = self._gaze_action_space()
        self._wait_until_running(timeout_s=10.0)

    def sample(self) -> XrSample | None:
        """Head and gaze now (the runtime's predicted display time of the next frame); None while
        the head is not tracked."""
        xr = self._xr
        self._poll_events()
        state = xr.wait_frame(self._session, xr.FrameWaitInfo())
        xr.begin_frame(self._session, xr.FrameBeginInfo())
        t = state.predicted_display_time
        xr.end_frame(
            self._session,
            xr.FrameEndInfo(display_time=t, environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE, layers=[]),
        )
        head = xr.locate_space(self._view_space, self._space, t)
        if not _valid(xr, head):
            return None
        space_from_head = _pose_matrix(head.pose)
        if self._gaze_space is not None:
            xr.sync_actions(
                self._session,
                xr.ActionsSyncInfo(active_action_sets=[xr.ActiveActionSet(self._action_set, xr.NULL_PATH)]),
            )
            gaze = xr.locate_space(self._gaze_space, self._space, t)
            if _valid(xr, gaze):
                m = _pose_matrix(gaze.pose)
                return XrSample(int(t), space_from_head, m[:3, 3].copy(), -m[:3, 2], True)
        if not self._warned_head_gaze and self.has_eye_gaze:
            log.warning("OpenXR: eye gaze not valid (eye tracker off or not calibrated?): using head gaze")
            self._warned_head_gaze = True
        return XrSample(
            int(t), space_from_head, space_from_head[:3, 3].copy(), -space_from_head[:3, 2], False
        )

    def stop(self) -> None:
        xr = self._xr
        if self._session is not None:
            if self._running:
                xr.end_session(self._session)
                self._running = False
            xr.destroy_session(self._session)
            self._session = None
        if self._instance is not None:
            xr.destroy_instance(self._instance)
            self._instance = None
        if self._context is not None:
            self._context.destroy()
            self._context = None

    # -- helpers -----------------------------------------------------------------------------

    def _eye_gaze_supported(self, system: Any) -> bool:
        xr = self._xr
        props = xr.SystemEyeGazeInteractionPropertiesEXT()
        xr.get_system_properties(self._instance, system, xr.SystemProperties(next=ctypes.pointer(props)))
        return bool(props.supports_eye_gaze_interaction)

    def _binding(self, system: Any) -> Any:
        """None headless; else pyopenxr's OpenGL binding on an offscreen GLFW context (the minimal
        graphics binding: the session never submits a layer, it only needs a context to exist)."""
        if self.headless:
            return None
        try:
            from xr.utils.gl import OpenGLGraphics
            from xr.utils.gl.glfw_util import GLFWOffscreenContextProvider

            self._context = GLFWOffscreenContextProvider()
            self._graphics = OpenGLGraphics(self._instance, system, self._context)
        except ImportError as exc:
            raise SourceError(
                f"the OpenXR runtime needs a graphics binding (no XR_MND_headless) and pyopenxr's "
                f"OpenGL helper cannot load ({exc}): pip install glfw PyOpenGL"
            ) from None
        except Exception as exc:  # GLFW raises its own error types when there is no display
            raise SourceError(
                f"cannot create the OpenGL context OpenXR needs ({type(exc).__name__}: {exc}): "
                "run on a desktop session, or use a runtime with XR_MND_headless"
            ) from None
        return self._graphics.graphics_binding.pointer

    def _gaze_action_space(self) -> Any:
        xr = self._xr
        self._action_set = xr.create_action_set(
            self._instance,
            xr.ActionSetCreateInfo(
                action_set_name="xrseg_gaze", localized_action_set_name="xrseg gaze", priority=0
            ),
        )
        action = xr.create_action(
            self._action_set,
            xr.ActionCreateInfo(
                action_type=xr.ActionType.POSE_INPUT, action_name="eye_gaze", localized_action_name="Eye gaze"
            ),
        )
        xr.suggest_interaction_profile_bindings(
            self._instance,
            xr.InteractionProfileSuggestedBinding(
                interaction_profile=xr.string_to_path(self._instance, EYE_GAZE_PROFILE),
                suggested_bindings=[
                    xr.ActionSuggestedBinding(action, xr.string_to_path(self._instance, EYE_GAZE_PATH))
                ],
            ),
        )
        xr.attach_session_action_sets(
            self._session, xr.SessionActionSetsAttachInfo(action_sets=[self._action_set])
        )
        return xr.create_action_space(
            self._session, xr.ActionSpaceCreateInfo(action=action, pose_in_action_space=xr.Posef())
        )

    def _wait_until_running(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._running:
            self._poll_events()
            if time.monotonic() > deadline:
                raise SourceError(
                    f"the OpenXR session did not become ready within {timeout_s:g} s: "
                    "is the headset awake and the runtime's compositor running?"
                )
            time.sleep(0.01)  # polling the runtime's event queue: OpenXR has no blocking wait for events

    def _poll_events(self) -> None:
        xr = self._xr
        while True:
            try:
                event = xr.poll_event(self._instance)
            except xr.EventUnavailable:
                return
            if xr.StructureType(event.type) != xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                continue
            changed = ctypes.cast(
                ctypes.byref(event), ctypes.POINTER(xr.EventDataSessionStateChanged)
            ).contents
            state = xr.SessionState(changed.state)
            if state == xr.SessionState.READY and not self._running:
                xr.begin_session(self._session, xr.SessionBeginInfo(xr.ViewConfigurationType.PRIMARY_STEREO))
                self._running = True
            elif state in (xr.SessionState.STOPPING, xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
                raise SourceError(f"the OpenXR session ended ({state.name}): the runtime or headset stopped")


def _valid(xr: Any, location: Any) -> bool:
    flags = location.location_flags
    need = xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT
    return (int(flags) & int(need)) == int(need)


def _pose_matrix(pose: Any) -> np.ndarray:
    o, p = pose.orientation, pose.position
    return posef_matrix(np.array([o.x, o.y, o.z, o.w]), np.array([p.x, p.y, p.z]))


class OpenXRCameraSource:
    """RealSense frames posed by the headset, with gaze pixels (`--source openxr+realsense`).

    options.calibration: camera-to-head calibration file (default: identity, the camera at the
    head origin looking forward; fine for a first try, wrong by the camera's offset).
    options.target: RealSense serial, or a .bag/.db3 recording to pose with the live headset.
    """

    def __init__(self, options: SourceOptions) -> None:
        from clients.sources.realsense import RECORDING_SUFFIXES, RealSenseSource

        self._tracker = OpenXRTracker(options.reference_space)
        recording = options.target is not None and options.target.lower().endswith(RECORDING_SUFFIXES)
        self._camera = RealSenseSource.playback(options) if recording else RealSenseSource.live(options)
        self._calibration_path = options.calibration
        self._calibration = HeadCameraCalibration.identity()
        self._info: SourceInfo | None = None

    def start(self) -> SourceInfo:
        if self._calibration_path is not None:
            self._calibration = read_calibration(self._calibration_path)
        else:
            log.warning("no --calibration: assuming the camera sits at the head origin looking forward")
        self._tracker.start()  # first: without a runtime, fail before opening the camera
        try:
            info = self._camera.start()
        except BaseException:
            self._tracker.stop()
            raise
        self._info = replace(info, name=f"openxr+{info.name}", has_pose=True, has_gaze=True)
        return self._info

    def read(self) -> SourceFrame | None:
        item = self._camera.read()
        if item is None:
            return None
        sample = self._tracker.sample()
        if sample is None:  # head not tracked: the frame goes without pose or gaze
            return item
        frame = item.frame
        pose = camera_pose(sample.space_from_head, self._calibration)
        depth_m = frame.depth.astype(np.float32) / frame.depth_scale if frame.depth is not None else None
        pixel = gaze_ray_to_pixel(sample.gaze_origin, sample.gaze_direction, pose, frame.intrinsics, depth_m)
        now = time.time()
        gaze = (
            ()
            if pixel is None
            else (
                GazeSample(
                    t=item.device_ts, x=pixel[0], y=pixel[1], confidence=1.0 if sample.eye_gaze else 0.5
                ),
            )
        )
        return SourceFrame(replace(frame, pose=pose, capture_ts=now), item.device_ts, item.clock, gaze)

    def stop(self) -> None:
        self._camera.stop()
        self._tracker.stop()
