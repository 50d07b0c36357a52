"""Request examples for the OpenAPI page (what /docs offers to "try it out").

Each one is answered 200 by a model of its kind whose room or box holds it: the shipped
acoustics-room-2d, airfoil-enf2enf and cell-elasticity (an enf2enf geometry-fields model: a
unit cell with a void, condition `load`), and the tiny models the tests train. Sent to a model of
another kind, it is refused 422 naming the field, as any request would be.
"""

from __future__ import annotations

from typing import Any

_ROOM_2D = {"source": [0.5, 0.5]}

PREDICT: dict[str, dict[str, Any]] = {
    "acoustics, receivers": {
        "summary": "Pressure at two receivers, 6 times (a 2-D room)",
        "value": {
            **_ROOM_2D,
            "receivers": [[0.3, 0.3], [0.6, 0.4]],
            "times": {"start": 0.0, "stop": 0.005, "num": 6},
        },
    },
    "acoustics, grid": {
        "summary": "Pressure on a 4 x 4 grid over the room, 3 times (a 2-D room)",
        "value": {
            **_ROOM_2D,
            "receivers": {"grid": {"nx": 4, "ny": 4}},
            "times": [0.0, 0.002, 0.004],
        },
    },
    "airfoil, points": {
        "summary": "Flow around a NACA 2412 at two points",
        "value": {
            "geometry": {"naca": "2412"},
            "conditions": {"aoa_deg": 4.0, "speed": 1.0},
            "query": {"points": [[0.2, 0.1], [1.2, -0.3]]},
        },
    },
    "airfoil, grid": {
        "summary": "Flow around a NACA 0012 on an 8 x 4 grid over the trained box",
        "value": {
            "geometry": {"naca": "0012"},
            "conditions": {"aoa_deg": 2.0, "speed": 1.0},
            "query": {"grid": {"nx": 8, "ny": 4}},
        },
    },
    "elasticity, points": {
        "summary": "cell-elasticity: von Mises stress and displacement at two points of a unit "
        "cell around a diamond-shaped void, under a 50 kPa load",
        "value": {
            "geometry": {"curves": [[[0.75, 0.5], [0.5, 0.75], [0.25, 0.5], [0.5, 0.25]]]},
            "conditions": {"load": 50000.0},
            "query": {"points": [[0.1, 0.1], [0.9, 0.5]]},
        },
    },
}

IMPULSE: dict[str, dict[str, Any]] = {
    "acoustics, 2-D room": {
        "summary": "From a source to a listener (a 2-D room)",
        "value": {**_ROOM_2D, "listener": [0.3, 0.3]},
    },
}

GEOMETRY: dict[str, dict[str, Any]] = {
    "naca": {"summary": "A NACA 4-digit airfoil", "value": {"geometry": {"naca": "2412"}}},
    "curves": {
        "summary": "One closed polyline, chords",
        "value": {"geometry": {"curves": [[[0.0, 0.0], [1.0, 0.0], [0.5, 0.08]]]}},
    },
}

INFER: dict[str, dict[str, Any]] = {
    "acoustics (end to end)": {
        "summary": "<acoustic 2-D model>: a source, and [x, y, t] rows",
        "value": {
            "inputs": [
                {"name": "source", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 0.5]},
                {
                    "name": "points",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "data": [[0.3, 0.3, 0.001], [0.6, 0.4, 0.002]],
                },
            ]
        },
    },
    "acoustics trunk, binary answer": {
        "summary": "<acoustic 2-D model>.trunk: the basis at [x, y, t] rows, answered binary",
        "value": {
            "id": "trunk-1",
            "inputs": [
                {"name": "points", "shape": [1, 3], "datatype": "FP32", "data": [0.3, 0.3, 0.001]}
            ],
            "parameters": {"binary_data_output": True},
        },
    },
}
