// WebXR feature detection: an immersive-ar session with depth sensing, camera access and viewer
// pose is what a headset browser would use as its RGB-D + pose source. The page says plainly what
// is missing; desktop browsers have no immersive-ar at all.

export async function detectXR(element) {
  const result = { immersive_ar: false, reason: "", features: [] };
  if (!window.isSecureContext) {
    result.reason = "WebXR needs a secure context (https:// or http://localhost); this page is not one";
  } else if (!navigator.xr) {
    result.reason = "this browser has no WebXR (navigator.xr is missing)";
  } else {
    try {
      result.immersive_ar = await navigator.xr.isSessionSupported("immersive-ar");
      result.reason = result.immersive_ar ? "" : "this browser or device offers no immersive-ar session";
    } catch (err) {
      result.reason = `immersive-ar check failed: ${err.message}`;
    }
  }
  element.innerHTML = "";
  if (!result.immersive_ar) {
    element.textContent = `WebXR AR unavailable: ${result.reason}. Use the webcam or an RGB-D clip.`;
    element.className = "missing";
    return result;
  }
  const button = document.createElement("button");
  button.textContent = "Enter AR (depth sensing, camera access)";
  button.addEventListener("click", () => enterAR(element, result));
  element.append("WebXR immersive-ar is available. ", button);
  element.className = "available";
  return result;
}

async function enterAR(element, result) {
  try {
    const session = await navigator.xr.requestSession("immersive-ar", {
      optionalFeatures: ["depth-sensing", "camera-access", "local"],
      depthSensing: { usagePreference: ["cpu-optimized"], dataFormatPreference: ["luminance-alpha", "float32"] },
    });
    const granted = session.enabledFeatures ? Array.from(session.enabledFeatures) : [];
    result.features = granted;
    const missing = ["depth-sensing", "camera-access"].filter((f) => !granted.includes(f));
    element.textContent = missing.length
      ? `AR session started, but without ${missing.join(" and ")}: this device cannot be an RGB-D source here.`
      : `AR session with ${granted.join(", ")}: streaming it to the engine is not implemented yet (see README).`;
    await session.end();
  } catch (err) {
    element.textContent = `Could not start an AR session: ${err.message}`;
  }
}
