"""enf2enf: one operator family for every geometry -> fields dataset (training.geometry_data)."""
