"""Ground truth for the Geo-FNO elasticity setting: a unit cell with a random void, solved by a
mixed (Taylor-Hood) hyperelastic FEM, written in the project's geometry-dataset format."""
