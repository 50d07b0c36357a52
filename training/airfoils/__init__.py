"""Airfoil flow (enf2enf family): panel-method data, the enf2enf model, baselines, export."""
