"""The DRACO model: the autoencoder (``draco``), ViT layers (``vit``), load/save (``weights``)."""

from draco_em.model.draco import DracoConfig, DracoMAE

__all__ = ["DracoConfig", "DracoMAE"]
