// The selected object's 3D segment (points + oriented box) in a small three.js view.
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

export class SegmentView {
  constructor(canvas) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: false, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(1);
    this.renderer.setSize(canvas.clientWidth || 320, canvas.clientHeight || 240, false);
    this.renderer.setClearColor(0x15171c);
    this.scene = new THREE.Scene();
    // Engine frames use OpenCV axes (x right, y down, z forward); turn them so up is up on screen.
    this.root = new THREE.Group();
    this.root.rotation.x = Math.PI;
    this.scene.add(this.root);
    this.camera = new THREE.PerspectiveCamera(50, this.canvas.width / this.canvas.height, 0.01, 100);
    this.camera.position.set(0, 0.5, 2);
    this.controls = new OrbitControls(this.camera, canvas);
    this.points = null;
    this.box = null;
    this.shown = { numPoints: 0, hasBox: false, promptId: null };
    this.dirty = true;
    this.controls.addEventListener("change", () => (this.dirty = true));
  }

  /** segment: the result header's segment; points: Float32Array N*3 in segment.frame coordinates. */
  show(segment, points, promptId) {
    this.clear();
    if (!segment || segment.status !== "ok" || !points || points.length === 0) return;
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(points, 3));
    this.points = new THREE.Points(geometry, new THREE.PointsMaterial({ color: 0x4fd1c5, size: 3, sizeAttenuation: false }));
    this.root.add(this.points);
    const [ex, ey, ez] = segment.box_extent;
    const edges = new THREE.EdgesGeometry(new THREE.BoxGeometry(ex, ey, ez));
    this.box = new THREE.LineSegments(edges, new THREE.LineBasicMaterial({ color: 0xffb020 }));
    const r = segment.box_rotation; // row-major 3x3, the box axes as columns
    const m = new THREE.Matrix4().set(r[0], r[1], r[2], 0, r[3], r[4], r[5], 0, r[6], r[7], r[8], 0, 0, 0, 0, 1);
    this.box.quaternion.setFromRotationMatrix(m);
    this.box.position.set(...segment.box_center);
    this.root.add(this.box);
    this.root.updateMatrixWorld();
    const center = new THREE.Vector3(...segment.centroid).applyMatrix4(this.root.matrixWorld);
    const size = Math.max(ex, ey, ez, 0.05);
    this.controls.target.copy(center);
    this.camera.position.copy(center).add(new THREE.Vector3(size * 1.2, size * 0.9, size * 1.8));
    this.camera.lookAt(center);
    this.controls.update();
    this.shown = { numPoints: points.length / 3, hasBox: true, promptId, centroid: segment.centroid };
    this.dirty = true;
  }

  clear() {
    for (const obj of [this.points, this.box]) {
      if (obj) {
        this.root.remove(obj);
        obj.geometry.dispose();
        obj.material.dispose();
      }
    }
    this.points = this.box = null;
    this.shown = { numPoints: 0, hasBox: false, promptId: null };
    this.dirty = true;
  }

  render() {
    if (!this.dirty) return;
    this.renderer.render(this.scene, this.camera);
    this.dirty = false;
  }
}
