"""3D object capture: TSDF fusion of a tracked object, mesh export, and the capture store.

Submodules are imported where they are used (this package imports nothing eagerly), so the
capture store can be used by a small process without loading Open3D:

- config.py      CaptureConfig and the domain errors
- volume.py      ObjectCapture: start / add / stop / cancel / status over an Open3D VoxelBlockGrid
- coverage.py    which viewing directions around the object have been seen
- mesh.py        marching cubes result -> the object's component, holes, simplification, PLY/OBJ/GLB
- render.py      preview images of a mesh (Open3D ray casting, headless)
- odometry.py    RGB-D odometry as the pose source for clients without tracking
- store.py       CaptureStore: SQLite index (WAL) + files written atomically
- dataset.py     a stored capture as a COCO instance dataset
- handler.py     the session-facing capture handler (event loop side)
- http.py        listing and download routes for the engine's aiohttp app
"""
