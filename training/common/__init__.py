"""Pieces every model family's training side uses: configs, atomic files, manifests, plots."""
