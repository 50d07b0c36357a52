"""Airfoil flow: the Hess-Smith panel method and its geometry dataset (enf2enf trains on it)."""
