"""The Open Inference Protocol (KServe V2) over HTTP, with the binary tensor data extension.

One V2 model per graph, named `<model>.<graph>` (e.g. `acoustics-room-2d.trunk`), plus the
end-to-end model under the model's own name. The routes are in app/routers/v2.py.
"""
